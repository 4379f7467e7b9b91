//! Statistics of rollout logs (responses of real or toy models): per-token KL estimators, a seeded
//! two-stage cluster bootstrap over prompts, and the one-parameter fit of the equilibrium-KL law
//! D ≈ (λ²/2)·I.
//!
//! Every estimate of a log is a mean over prompts of a within-prompt weighted mean. Responses of one
//! prompt are correlated, so the bootstrap resamples prompts first, then units (records) within each
//! resampled prompt and record kind; with one prompt it is the ordinary bootstrap, with many it
//! carries the between-prompt variance. Replicate b draws from Philox keyed by (seed, b, draw), so
//! the numbers are the same whatever the thread count.

use crate::parallel::map_chunks_of;
use crate::rng::{uniforms, DrawKey};
use crate::{Error, Result};

/// k1 = log p − log q, the plain Monte Carlo term of KL(p ‖ q) for a token drawn from p.
pub fn kl_k1(log_p: f64, log_q: f64) -> f64 {
    log_p - log_q
}

/// k3 = (r − 1) − log r with r = q/p: unbiased for KL(p ‖ q) on draws from p (E_p[r] = 1 when q's
/// support lies in p's) and never negative, so it has far less variance than k1 (Schulman, 2020).
pub fn kl_k3(log_p: f64, log_q: f64) -> f64 {
    let log_r = log_q - log_p; // q = 0 gives −1 + ∞ = +∞
    log_r.exp_m1() - log_r
}

/// KL(p ‖ q) between two full distributions given as log-probabilities over the same tokens.
/// Tokens with p = 0 contribute nothing; p > 0 where q = 0 gives +∞.
pub fn kl_full(log_p: &[f64], log_q: &[f64]) -> f64 {
    log_p
        .iter()
        .zip(log_q)
        .filter(|(lp, _)| **lp > f64::NEG_INFINITY)
        .map(|(&lp, &lq)| lp.exp() * (lp - lq))
        .sum()
}

/// A lower bound of KL(p ‖ q) from the probabilities of a few tokens known under both models (top-k
/// lists): the KL between the coarse-grained distributions (known tokens, "the rest"), which by the
/// data-processing inequality never exceeds the full KL.
pub fn kl_lower_bound(p_known: &[f64], q_known: &[f64]) -> f64 {
    let mut kl = 0.0;
    for (&p, &q) in p_known.iter().zip(q_known) {
        if p > 0.0 {
            kl += p * (p / q).ln();
        }
    }
    // The rest is a rounding residue when the known tokens cover (almost) all of p; a larger q_rest
    // than the true one only lowers the term, so the floor keeps the bound a bound.
    let p_rest = 1.0 - p_known.iter().sum::<f64>();
    let q_rest = (1.0 - q_known.iter().sum::<f64>()).max(f64::MIN_POSITIVE);
    if p_rest > 1e-12 {
        kl += p_rest * (p_rest / q_rest).ln();
    }
    kl.max(0.0)
}

/// Units (records) to average: `columns` statistics per unit, each with a value and a weight
/// (weight 0: the unit says nothing about that statistic). Row-major U × columns.
pub struct Units<'a> {
    pub prompt: &'a [u32],
    /// Record kind (policy samples, reference samples, prefill records, …): resampled separately.
    pub stratum: &'a [u32],
    pub values: &'a [f64],
    pub weights: &'a [f64],
    pub columns: usize,
}

/// Point estimates, bootstrap standard errors and support of each statistic.
pub struct Bootstrap {
    pub estimate: Vec<f64>,
    pub se: Vec<f64>,
    /// Effective number of units carrying the variance, (Σ d²)²/Σ d⁴ with d = w·(x − prompt mean).
    pub support: Vec<f64>,
    /// replicates × columns estimates (NaN where a replicate has no data for a statistic).
    pub replicates: Vec<f64>,
}

/// Units grouped by prompt, then by stratum within the prompt.
struct Groups {
    /// Per prompt, its strata; per stratum, its unit indices.
    prompts: Vec<Vec<Vec<usize>>>,
}

impl Groups {
    fn new(units: &Units) -> Groups {
        let mut keys: Vec<(u32, u32, usize)> = (0..units.prompt.len()).map(|u| (units.prompt[u], units.stratum[u], u)).collect();
        keys.sort_unstable();
        let mut prompts: Vec<Vec<Vec<usize>>> = Vec::new();
        let mut last: Option<(u32, u32)> = None;
        for (p, s, u) in keys {
            match last {
                Some((lp, ls)) if lp == p && ls == s => prompts.last_mut().unwrap().last_mut().unwrap().push(u),
                Some((lp, _)) if lp == p => prompts.last_mut().unwrap().push(vec![u]),
                _ => prompts.push(vec![vec![u]]),
            }
            last = Some((p, s));
        }
        Groups { prompts }
    }
}

/// Σ w·x and Σ w per column over the given units, added into `sums` (2 × columns).
fn accumulate(units: &Units, unit: usize, sums: &mut [f64]) {
    let k = units.columns;
    for c in 0..k {
        let w = units.weights[unit * k + c];
        if w != 0.0 {
            sums[c] += w * units.values[unit * k + c];
            sums[k + c] += w;
        }
    }
}

/// Adds one prompt's within-prompt means to the running mean over prompts.
fn add_prompt(sums: &[f64], columns: usize, total: &mut [f64], count: &mut [f64]) {
    for c in 0..columns {
        if sums[columns + c] > 0.0 {
            total[c] += sums[c] / sums[columns + c];
            count[c] += 1.0;
        }
    }
}

fn finish(total: &[f64], count: &[f64]) -> Vec<f64> {
    total.iter().zip(count).map(|(t, n)| if *n > 0.0 { t / n } else { f64::NAN }).collect()
}

fn check(units: &Units) -> Result<()> {
    let n = units.prompt.len();
    let k = units.columns;
    if units.stratum.len() != n || units.values.len() != n * k || units.weights.len() != n * k {
        return Err(Error::InvalidArgument(format!(
            "bootstrap: {n} prompts, {} strata, {} values and {} weights do not make {n} units × {k} columns",
            units.stratum.len(),
            units.values.len(),
            units.weights.len()
        )));
    }
    if let Some(i) = units.weights.iter().position(|w| !(w.is_finite() && *w >= 0.0)) {
        return Err(Error::InvalidArgument(format!("bootstrap: weight {i} must be finite and ≥ 0, got {}", units.weights[i])));
    }
    if let Some(i) = (0..n * k).find(|&i| units.weights[i] > 0.0 && !units.values[i].is_finite()) {
        return Err(Error::InvalidArgument(format!("bootstrap: value {i} (unit {}, column {}) is not finite", i / k, i % k)));
    }
    Ok(())
}

/// Means over prompts of within-prompt weighted means, with `replicates` two-stage bootstrap
/// replicates (prompts with replacement, then units within each prompt and stratum).
pub fn cluster_bootstrap(units: &Units, replicates: usize, seed: u64) -> Result<Bootstrap> {
    check(units)?;
    let k = units.columns;
    let groups = Groups::new(units);
    let num_prompts = groups.prompts.len();

    // Point estimates, and each prompt's means (for the support).
    let mut total = vec![0.0; k];
    let mut count = vec![0.0; k];
    let mut prompt_means = Vec::with_capacity(num_prompts);
    for strata in &groups.prompts {
        let mut sums = vec![0.0; 2 * k];
        for &u in strata.iter().flatten() {
            accumulate(units, u, &mut sums);
        }
        add_prompt(&sums, k, &mut total, &mut count);
        prompt_means.push((0..k).map(|c| if sums[k + c] > 0.0 { sums[c] / sums[k + c] } else { 0.0 }).collect::<Vec<_>>());
    }
    let estimate = finish(&total, &count);

    let mut d2 = vec![0.0; k];
    let mut d4 = vec![0.0; k];
    for (p, strata) in groups.prompts.iter().enumerate() {
        for &u in strata.iter().flatten() {
            for c in 0..k {
                let d = units.weights[u * k + c] * (units.values[u * k + c] - prompt_means[p][c]);
                d2[c] += d * d;
                d4[c] += d * d * d * d;
            }
        }
    }
    let support = d2.iter().zip(&d4).map(|(a, b)| if *b > 0.0 { a * a / b } else { 0.0 }).collect();

    // Replicates, each a pure function of (seed, b): chunks of one replicate, results in order.
    let draws = map_chunks_of(replicates, 1, |range| {
        let b = range.start as u32;
        let mut counter = 0u32;
        let mut draw = |n: usize| {
            let [u, _] = uniforms(seed, DrawKey { index: b, position: counter, stream: 0x6c6f_6773, substream: 0 });
            counter += 1;
            ((u * n as f64) as usize).min(n - 1)
        };
        let mut total = vec![0.0; k];
        let mut count = vec![0.0; k];
        let mut sums = vec![0.0; 2 * k];
        for _ in 0..num_prompts {
            let strata = &groups.prompts[draw(num_prompts)];
            sums.iter_mut().for_each(|s| *s = 0.0);
            for members in strata {
                for _ in 0..members.len() {
                    accumulate(units, members[draw(members.len())], &mut sums);
                }
            }
            add_prompt(&sums, k, &mut total, &mut count);
        }
        finish(&total, &count)
    });
    let replicates_flat: Vec<f64> = draws.concat();
    let se = (0..k).map(|c| standard_deviation(draws.iter().map(|r| r[c]))).collect();
    Ok(Bootstrap { estimate, se, support, replicates: replicates_flat })
}

/// Sample standard deviation of the finite values (NaN with fewer than two).
pub fn standard_deviation(values: impl Iterator<Item = f64>) -> f64 {
    let xs: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    if xs.len() < 2 {
        return f64::NAN;
    }
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    (xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
}

/// The fit of D_j ≈ c·I_j over blocks j, c = λ²/2 (least squares through the origin).
#[derive(Debug, Clone, PartialEq)]
pub struct LawFit {
    pub lambda: f64,
    pub lambda_se: f64,
    /// c = λ²/2.
    pub scale: f64,
    pub scale_se: f64,
    /// 1 − Σ(D − cI)² / Σ(D − mean D)² over the blocks.
    pub r_squared: f64,
    /// Σ (D − cI)² / (se_D² + c²·se_I²), with `dof` = blocks − 1 degrees of freedom.
    pub chi_squared: f64,
    pub dof: usize,
    pub blocks: usize,
}

fn scale_of(d: &[f64], i: &[f64]) -> f64 {
    let (mut di, mut ii) = (0.0, 0.0);
    for (x, y) in d.iter().zip(i) {
        if x.is_finite() && y.is_finite() {
            di += x * y;
            ii += y * y;
        }
    }
    if ii > 0.0 { di / ii } else { f64::NAN }
}

fn lambda_of(scale: f64) -> f64 {
    if scale.is_nan() { f64::NAN } else { (2.0 * scale.max(0.0)).sqrt() }
}

/// Fits D ≈ (λ²/2)·I on per-block estimates with their standard errors; the bootstrap replicates of
/// D and I (replicates × blocks, from the same resamples) give the standard error of λ.
pub fn fit_kl_law(d: &[f64], d_se: &[f64], i: &[f64], i_se: &[f64], d_reps: &[f64], i_reps: &[f64]) -> Result<LawFit> {
    let j = d.len();
    if i.len() != j || d_se.len() != j || i_se.len() != j || d_reps.len() != i_reps.len() || (j > 0 && d_reps.len() % j != 0) {
        return Err(Error::InvalidArgument("fit_kl_law: D, I, their SEs and replicates must have matching lengths".into()));
    }
    let scale = scale_of(d, i);
    let reps: Vec<f64> = if j == 0 { Vec::new() } else { d_reps.chunks(j).zip(i_reps.chunks(j)).map(|(dr, ir)| scale_of(dr, ir)).collect() };
    let used: Vec<usize> = (0..j).filter(|&b| d[b].is_finite() && i[b].is_finite()).collect();
    let mean_d = used.iter().map(|&b| d[b]).sum::<f64>() / used.len().max(1) as f64;
    let (mut ss_res, mut ss_tot, mut chi) = (0.0, 0.0, 0.0);
    for &b in &used {
        let r = d[b] - scale * i[b];
        ss_res += r * r;
        ss_tot += (d[b] - mean_d) * (d[b] - mean_d);
        let var = d_se[b] * d_se[b] + scale * scale * i_se[b] * i_se[b];
        if var > 0.0 {
            chi += r * r / var;
        }
    }
    Ok(LawFit {
        lambda: lambda_of(scale),
        lambda_se: standard_deviation(reps.iter().map(|&c| lambda_of(c))),
        scale,
        scale_se: standard_deviation(reps.iter().copied()),
        r_squared: if ss_tot > 0.0 { 1.0 - ss_res / ss_tot } else { f64::NAN },
        chi_squared: chi,
        dof: used.len().saturating_sub(1),
        blocks: used.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k3_is_unbiased_and_non_negative_and_full_kl_matches_its_mean() {
        let p = [0.5f64, 0.3, 0.2];
        let q = [0.2f64, 0.3, 0.5];
        let (lp, lq): (Vec<f64>, Vec<f64>) = (p.iter().map(|x| x.ln()).collect(), q.iter().map(|x| x.ln()).collect());
        let exact = kl_full(&lp, &lq);
        let mean_k1: f64 = (0..3).map(|a| p[a] * kl_k1(lp[a], lq[a])).sum();
        let mean_k3: f64 = (0..3).map(|a| p[a] * kl_k3(lp[a], lq[a])).sum();
        assert!((mean_k1 - exact).abs() < 1e-15 && (mean_k3 - exact).abs() < 1e-15, "{exact} {mean_k1} {mean_k3}");
        assert!((0..3).all(|a| kl_k3(lp[a], lq[a]) >= 0.0));
        // Coarse-graining never exceeds the full KL, and equals it when every token is known.
        assert!(kl_lower_bound(&p[..1], &q[..1]) <= exact);
        assert!((kl_lower_bound(&p[..2], &q[..2]) - exact).abs() < 1e-12);
    }

    #[test]
    fn bootstrap_means_over_prompts_and_its_se_matches_the_binomial_one() {
        // Prompt 0: 400 units with values 0/1 at rate 0.25; prompt 1 has weight only in column 1.
        let n = 400;
        let mut prompt = vec![0u32; n];
        prompt.extend(vec![1u32; 10]);
        let stratum = vec![0u32; n + 10];
        let mut values = Vec::new();
        let mut weights = Vec::new();
        for u in 0..n {
            values.extend([(u % 4 == 0) as u8 as f64, 2.0]);
            weights.extend([1.0, 1.0]);
        }
        for _ in 0..10 {
            values.extend([0.0, 4.0]);
            weights.extend([0.0, 1.0]);
        }
        let units = Units { prompt: &prompt, stratum: &stratum, values: &values, weights: &weights, columns: 2 };
        let b = cluster_bootstrap(&units, 400, 3).unwrap();
        assert_eq!(b.estimate[0], 0.25);
        assert_eq!(b.estimate[1], 3.0); // mean over prompts of 2 and 4
        let binomial = (0.25f64 * 0.75 / n as f64).sqrt();
        assert!((b.se[0] / binomial - 1.0).abs() < 0.15, "{} vs {binomial}", b.se[0]);
        // Support: 100 deviations of 0.75 and 300 of −0.25.
        let expected = 75.0f64.powi(2) / (100.0 * 0.75f64.powi(4) + 300.0 * 0.25f64.powi(4));
        assert!((b.support[0] - expected).abs() < 1e-9, "{}", b.support[0]);
        // Bit-identical on a second run (replicates are pure functions of the seed).
        let again = cluster_bootstrap(&units, 400, 3).unwrap();
        let bits = |r: &[f64]| r.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&b.replicates), bits(&again.replicates));
    }

    #[test]
    fn bootstrap_carries_the_variance_between_prompts() {
        // 40 prompts whose records all share the prompt's value: no variance within a prompt, so
        // the SE is the between-prompt one, sd(prompt values)/√P.
        let p = 40usize;
        let prompt: Vec<u32> = (0..p * 5).map(|u| (u / 5) as u32).collect();
        let stratum = vec![0u32; p * 5];
        let values: Vec<f64> = (0..p * 5).map(|u| ((u / 5) % 4) as f64).collect();
        let weights = vec![1.0; p * 5];
        let units = Units { prompt: &prompt, stratum: &stratum, values: &values, weights: &weights, columns: 1 };
        let b = cluster_bootstrap(&units, 2000, 9).unwrap();
        let expected = standard_deviation((0..p).map(|i| (i % 4) as f64)) / (p as f64).sqrt();
        assert!((b.estimate[0] - 1.5).abs() < 1e-12);
        assert!((b.se[0] / expected - 1.0).abs() < 0.1, "{} vs {expected}", b.se[0]);
    }

    #[test]
    fn law_fit_recovers_lambda_from_exact_proportional_blocks() {
        let i = [0.2, 0.1, 0.05, 0.0];
        let d: Vec<f64> = i.iter().map(|x| 0.5 * 0.8 * 0.8 * x).collect();
        let fit = fit_kl_law(&d, &[0.01; 4], &i, &[0.01; 4], &[], &[]).unwrap();
        assert!((fit.lambda - 0.8).abs() < 1e-12 && (fit.r_squared - 1.0).abs() < 1e-12 && fit.chi_squared < 1e-20);
        assert_eq!(fit.dof, 3);
    }
}
