//! Statistics of rollout logs: per-token KL estimators, the cluster bootstrap over prompts and the
//! fit of the equilibrium-KL law (see core::log_stats).

use crate::cancel::CancelFlag;
use crate::core;
use crate::job::{spawn, Job, JobTask};
use crate::{guard, seed_from};
use core::log_stats;
use napi::bindgen_prelude::*;
use napi_derive::napi;

fn same_length(a: usize, b: usize, what: &str) -> core::Result<()> {
    if a == b {
        Ok(())
    } else {
        Err(crate::invalid(format!("{what}: lengths differ ({a} and {b})")))
    }
}

#[napi(object)]
pub struct TokenKl {
    pub k1: Float64Array,
    pub k3: Float64Array,
}

/// k1 and k3 estimates of KL(p ‖ q) for tokens drawn from p, given log p and log q of each token.
#[napi]
pub fn kl_token_estimates(log_p: Float64Array, log_q: Float64Array) -> napi::Result<TokenKl, String> {
    guard(|| {
        same_length(log_p.len(), log_q.len(), "klTokenEstimates")?;
        let k1 = log_p.iter().zip(log_q.iter()).map(|(&p, &q)| log_stats::kl_k1(p, q)).collect::<Vec<_>>();
        let k3 = log_p.iter().zip(log_q.iter()).map(|(&p, &q)| log_stats::kl_k3(p, q)).collect::<Vec<_>>();
        Ok(TokenKl { k1: Float64Array::new(k1), k3: Float64Array::new(k3) })
    })
}

/// Per row, KL(p ‖ q) between full distributions (log-probabilities, rows × width, row-major).
#[napi]
pub fn kl_full_rows(log_p: Float64Array, log_q: Float64Array, width: u32) -> napi::Result<Float64Array, String> {
    guard(|| {
        same_length(log_p.len(), log_q.len(), "klFullRows")?;
        let w = width as usize;
        if w == 0 || log_p.len() % w != 0 {
            return Err(crate::invalid(format!("klFullRows: {} entries are not rows of width {w}", log_p.len())));
        }
        Ok(log_p.chunks(w).zip(log_q.chunks(w)).map(|(p, q)| log_stats::kl_full(p, q)).collect::<Vec<_>>())
    })
    .map(Float64Array::new)
}

/// Per row, the coarse-grained lower bound of KL(p ‖ q) from the probabilities of the tokens known
/// under both models; row r holds entries offsets[r]..offsets[r+1].
#[napi]
pub fn kl_lower_bound_rows(p_known: Float64Array, q_known: Float64Array, offsets: Uint32Array) -> napi::Result<Float64Array, String> {
    guard(|| {
        same_length(p_known.len(), q_known.len(), "klLowerBoundRows")?;
        if offsets.is_empty() || offsets[offsets.len() - 1] as usize != p_known.len() || offsets.windows(2).any(|w| w[0] > w[1]) {
            return Err(crate::invalid("klLowerBoundRows: offsets must rise from 0 to the number of entries".into()));
        }
        Ok(offsets.windows(2).map(|w| log_stats::kl_lower_bound(&p_known[w[0] as usize..w[1] as usize], &q_known[w[0] as usize..w[1] as usize])).collect::<Vec<_>>())
    })
    .map(Float64Array::new)
}

#[napi(object)]
pub struct BootstrapInput {
    pub prompt: Uint32Array,
    pub stratum: Uint32Array,
    /// units × columns, row-major.
    pub values: Float64Array,
    pub weights: Float64Array,
    pub columns: u32,
    pub replicates: u32,
    pub seed: f64,
}

#[napi(object)]
pub struct BootstrapOutput {
    pub estimate: Float64Array,
    pub se: Float64Array,
    pub support: Float64Array,
    /// replicates × columns.
    pub replicates: Float64Array,
}

/// Means over prompts of within-prompt weighted means, with two-stage cluster-bootstrap SEs.
#[napi]
pub fn cluster_bootstrap(input: BootstrapInput) -> napi::Result<BootstrapOutput, String> {
    guard(|| BootstrapJob::from(&input)?.run()).map(BootstrapJob::to_js)
}

/// `clusterBootstrap` on the libuv thread pool (the units are copied first). A raised `cancel` flag
/// rejects it with HH_ABORTED (checked before every replicate).
#[napi(ts_return_type = "Promise<BootstrapOutput>")]
pub fn cluster_bootstrap_async(input: BootstrapInput, cancel: Option<&CancelFlag>) -> napi::Result<AsyncTask<JobTask<BootstrapJob>>, String> {
    guard(|| Ok(spawn(BootstrapJob::from(&input)?, cancel)))
}

/// The cluster bootstrap with its units copied.
pub struct BootstrapJob {
    prompt: Vec<u32>,
    stratum: Vec<u32>,
    values: Vec<f64>,
    weights: Vec<f64>,
    columns: usize,
    replicates: usize,
    seed: u64,
}

impl BootstrapJob {
    fn from(input: &BootstrapInput) -> core::Result<Self> {
        Ok(BootstrapJob {
            prompt: input.prompt.to_vec(),
            stratum: input.stratum.to_vec(),
            values: input.values.to_vec(),
            weights: input.weights.to_vec(),
            columns: input.columns as usize,
            replicates: input.replicates as usize,
            seed: seed_from(input.seed, "seed")?,
        })
    }
}

impl Job for BootstrapJob {
    type Data = log_stats::Bootstrap;
    type Js = BootstrapOutput;
    fn run(&self) -> core::Result<log_stats::Bootstrap> {
        let units = log_stats::Units { prompt: &self.prompt, stratum: &self.stratum, values: &self.values, weights: &self.weights, columns: self.columns };
        log_stats::cluster_bootstrap(&units, self.replicates, self.seed)
    }
    fn to_js(b: log_stats::Bootstrap) -> BootstrapOutput {
        BootstrapOutput {
            estimate: Float64Array::new(b.estimate),
            se: Float64Array::new(b.se),
            support: Float64Array::new(b.support),
            replicates: Float64Array::new(b.replicates),
        }
    }
}

#[napi(object)]
pub struct LawFitOutput {
    pub lambda: f64,
    pub lambda_se: f64,
    pub scale: f64,
    pub scale_se: f64,
    pub r_squared: f64,
    pub chi_squared: f64,
    pub dof: u32,
    pub blocks: u32,
}

/// Fits D ≈ (λ²/2)·I over blocks; the replicates (replicates × blocks) give λ's standard error.
#[napi]
pub fn fit_kl_law(d: Float64Array, d_se: Float64Array, i: Float64Array, i_se: Float64Array, d_replicates: Float64Array, i_replicates: Float64Array) -> napi::Result<LawFitOutput, String> {
    guard(|| {
        let f = log_stats::fit_kl_law(&d, &d_se, &i, &i_se, &d_replicates, &i_replicates)?;
        Ok(LawFitOutput {
            lambda: f.lambda,
            lambda_se: f.lambda_se,
            scale: f.scale,
            scale_se: f.scale_se,
            r_squared: f.r_squared,
            chi_squared: f.chi_squared,
            dof: f.dof as u32,
            blocks: f.blocks as u32,
        })
    })
}
