//! Transformer policies: configuration, seeded parameters, batched logits, sampling and the
//! score-function gradient over given responses.

use crate::core;
use crate::job::{spawn, Job, JobTask};
use crate::{count_from, guard, invalid, seed_from};
use core::model::ScenarioSpec;
use core::sampling::Samples;
use core::walk::Track;
use core::transformer::{Transformer as Model, TransformerConfig};
use core::walk::NO_TOKEN;
use napi::bindgen_prelude::*;
use napi_derive::napi;

/// The shape of a transformer policy over a vocabulary of `vocab` tokens and responses of `length`.
#[napi(object)]
pub struct TransformerShape {
    pub vocab: u32,
    pub length: u32,
    pub layers: u32,
    pub width: u32,
    pub heads: u32,
    pub mlp_width: u32,
}

/// Sampled responses: tokens N × T and their log-probabilities under the sampling parameters.
#[napi(object)]
pub struct TransformerSamples {
    pub tokens: Uint32Array,
    pub log_probs: Float64Array,
}

/// A decoder-only transformer (its parameters are passed to each call).
#[napi]
pub struct Transformer {
    inner: Model,
}

#[napi]
impl Transformer {
    /// Checks the shape. Throws HH_INVALID_ARGUMENT naming the bad field.
    #[napi(constructor)]
    pub fn new(shape: TransformerShape) -> napi::Result<Self, String> {
        let config = TransformerConfig {
            vocab: shape.vocab as usize,
            length: shape.length as usize,
            layers: shape.layers as usize,
            width: shape.width as usize,
            heads: shape.heads as usize,
            mlp_width: shape.mlp_width as usize,
        };
        guard(|| Ok(Transformer { inner: Model::new(config)? }))
    }

    #[napi(getter)]
    pub fn num_params(&self) -> u32 {
        self.inner.num_params() as u32
    }

    /// Seeded initial parameters.
    #[napi]
    pub fn init_params(&self, seed: f64) -> napi::Result<Float64Array, String> {
        guard(|| Ok(self.inner.init_params(seed_from(seed, "seed")?))).map(Float64Array::new)
    }

    /// Logits at every position of B responses (B × T tokens, 0xFFFFFFFF after the end): B × T × V,
    /// row (b, i) the distribution of token i + 1 given the tokens before it.
    #[napi]
    pub fn logits(&self, params: Float64Array, responses: Uint32Array) -> napi::Result<Float64Array, String> {
        guard(|| {
            self.check(&params, &responses)?;
            Ok(self.inner.logits(&params, &responses))
        })
        .map(Float64Array::new)
    }

    /// Logits of the next token after each prefix by the KV cache, one position at a time (the
    /// sampler's path): prefixes of B responses of `prefixLength` tokens each, B × V.
    #[napi]
    pub fn next_logits(&self, params: Float64Array, prefixes: Uint32Array, prefix_length: u32) -> napi::Result<Float64Array, String> {
        guard(|| {
            self.inner.check_params(&params)?;
            let (k, t, v) = (prefix_length as usize, self.inner.config.length, self.inner.config.vocab);
            if k >= t || (k > 0 && prefixes.len() % k != 0) || (k == 0 && !prefixes.is_empty()) {
                return Err(invalid(format!("prefixLength must be below T = {t} and divide the {} prefix tokens", prefixes.len())));
            }
            self.check_tokens(&prefixes, false)?;
            let count = if k == 0 { 1 } else { prefixes.len() / k };
            let mut cache = vec![0.0; self.inner.cache_len()];
            let mut out = vec![0.0; count * v];
            for (b, row) in out.chunks_exact_mut(v).enumerate() {
                self.inner.next_logits(&params, &prefixes[b * k..(b + 1) * k], &mut cache, row);
            }
            Ok(out)
        })
        .map(Float64Array::new)
    }

    /// Σ_n Σ_t c_{n,t}·∇log π(y_{n,t} | y_{n,<t}) / N over given responses (N × T, 0xFFFFFFFF after
    /// the end) with coefficients c (N × T): one batched backward pass per batch of responses. With
    /// `perPosition`, the T per-position gradients G_t instead (T × P, one backward per position).
    #[napi]
    pub fn score_gradient(&self, params: Float64Array, responses: Uint32Array, coefficients: Float64Array, per_position: Option<bool>) -> napi::Result<Float64Array, String> {
        guard(|| {
            self.check(&params, &responses)?;
            if coefficients.len() != responses.len() {
                return Err(invalid(format!("coefficients: {} entries, expected one per token ({})", coefficients.len(), responses.len())));
            }
            if let Some(i) = coefficients.iter().position(|c| !c.is_finite()) {
                return Err(invalid(format!("coefficient {i} is {}", coefficients[i])));
            }
            let t = self.inner.config.length;
            let samples = self.samples_of(&responses);
            let coef = |n: usize, i: usize, _: f64| coefficients[n * t + i];
            Ok(if per_position.unwrap_or(false) {
                self.inner.score_gradient_per_position(&params, &samples, &coef)
            } else {
                self.inner.score_gradient(&params, &samples, &coef)
            })
        })
        .map(Float64Array::new)
    }

    /// `count` responses of T tokens (no end token), drawn batch-wise with the KV cache; response
    /// n uses the draw keys of index firstIndex + n, as the per-sample sampler does.
    #[napi]
    pub fn sample(&self, params: Float64Array, count: f64, seed: f64, first_index: Option<u32>) -> napi::Result<TransformerSamples, String> {
        guard(|| {
            let (count, seed) = (count_from(count, "count")?, seed_from(seed, "seed")?);
            let (v, t) = (self.inner.config.vocab, self.inner.config.length);
            // A scenario of the model's V and T that never ends a response and has no harm.
            let spec = ScenarioSpec { vocab: v, length: t, end_token: None, order: 1, base: vec![1.0 / v as f64; (v + 1) * v], transitions: vec![0; v], harm: vec![0.0], start: 0 };
            let samples = self.inner.sample_batched(&params, &Track::new(&spec, None), count, seed, first_index.unwrap_or(0))?;
            Ok((samples.tokens, samples.log_probs))
        })
        .map(|(tokens, log_probs)| TransformerSamples { tokens: Uint32Array::new(tokens), log_probs: Float64Array::new(log_probs) })
    }

    /// Gradient of PPO's clipped surrogate (1/N) Σ min(ρ·A, clip(ρ, 1 ± clip)·A) over N responses,
    /// with ρ = π(y)/exp(oldLogProbs) and advantages A (both N × T).
    #[napi]
    pub fn ppo_gradient(&self, params: Float64Array, responses: Uint32Array, old_log_probs: Float64Array, advantages: Float64Array, clip: f64) -> napi::Result<Float64Array, String> {
        guard(|| {
            self.check(&params, &responses)?;
            for (field, values) in [("oldLogProbs", &old_log_probs), ("advantages", &advantages)] {
                if values.len() != responses.len() {
                    return Err(invalid(format!("{field}: {} entries, expected one per token ({})", values.len(), responses.len())));
                }
                if let Some(i) = values.iter().position(|c| !c.is_finite()) {
                    return Err(invalid(format!("{field} entry {i} is {}", values[i])));
                }
            }
            if !(clip.is_finite() && clip > 0.0) {
                return Err(invalid(format!("clip must be positive, got {clip}")));
            }
            let samples = self.samples_of(&responses);
            Ok(self.inner.ppo_gradient(&params, &samples, &old_log_probs, &advantages, clip))
        })
        .map(Float64Array::new)
    }
}

impl Transformer {
    /// Given responses as `Samples` (log-probabilities and harm unused).
    fn samples_of(&self, responses: &[u32]) -> Samples {
        let t = self.inner.config.length;
        let count = responses.len() / t;
        let emitted = responses.chunks_exact(t).map(|r| r.iter().take_while(|&&a| a != NO_TOKEN).count() as u32).collect();
        Samples { count, first_index: 0, length: t, tokens: responses.to_vec(), log_probs: vec![0.0; responses.len()], harm: vec![0.0; count], emitted, states: None }
    }
}

impl Transformer {
    fn check(&self, params: &[f64], responses: &[u32]) -> core::Result<()> {
        self.inner.check_params(params)?;
        let t = self.inner.config.length;
        if responses.is_empty() || responses.len() % t != 0 {
            return Err(invalid(format!("responses: {} tokens, expected a positive multiple of T = {t}", responses.len())));
        }
        self.check_tokens(responses, true)?;
        for (n, response) in responses.chunks_exact(t).enumerate() {
            let end = response.iter().position(|&a| a == NO_TOKEN).unwrap_or(t);
            if response[end..].iter().any(|&a| a != NO_TOKEN) {
                return Err(invalid(format!("response {n} has a token after its end (0xFFFFFFFF)")));
            }
        }
        Ok(())
    }

    fn check_tokens(&self, tokens: &[u32], may_end: bool) -> core::Result<()> {
        let v = self.inner.config.vocab;
        match tokens.iter().position(|&a| a as usize >= v && !(may_end && a == NO_TOKEN)) {
            Some(i) => Err(invalid(format!("token {i} is {}, not below V = {v}", tokens[i]))),
            None => Ok(()),
        }
    }
}

/// Settings of `transformerFitBase`.
#[napi(object)]
pub struct FitBaseOptions {
    pub steps: u32,
    /// Base responses per step.
    pub batch: u32,
    pub learning_rate: f64,
    pub seed: f64,
    /// Base responses of the KL estimate (default 4096).
    pub kl_samples: Option<u32>,
}

#[napi(object)]
pub struct FitBaseOutput {
    pub params: Float64Array,
    /// KL(P_base ‖ P_θ) over whole responses, estimated on fresh base responses, and its SE.
    pub sampled_kl: f64,
    pub sampled_kl_se: f64,
}

/// Fits a transformer to a scenario's base by teacher forcing on base samples (see
/// crate/core/src/transformer_table.rs), starting from `params` (copied).
#[napi]
pub fn transformer_fit_base(scenario: crate::ScenarioInput, layout: crate::policy::TransformerLayout, params: Float64Array, options: FitBaseOptions) -> napi::Result<FitBaseOutput, String> {
    guard(|| TransformerFitJob::new(&scenario, &layout, &params, &options)?.run()).map(TransformerFitJob::to_js)
}

/// `transformerFitBase` on the libuv thread pool. A raised `cancel` flag rejects it with HH_ABORTED.
#[napi(ts_return_type = "Promise<FitBaseOutput>")]
pub fn transformer_fit_base_async(scenario: crate::ScenarioInput, layout: crate::policy::TransformerLayout, params: Float64Array, options: FitBaseOptions, cancel: Option<&crate::cancel::CancelFlag>) -> napi::Result<AsyncTask<JobTask<TransformerFitJob>>, String> {
    guard(|| Ok(spawn(TransformerFitJob::new(&scenario, &layout, &params, &options)?, cancel)))
}

/// The fit of a transformer to a base, with its inputs copied.
pub struct TransformerFitJob {
    spec: ScenarioSpec,
    net: Model,
    params: Vec<f64>,
    fit: core::transformer_table::FitOptions,
    kl_samples: usize,
    /// The index of the first fresh response of the KL estimate (after the fitting ones).
    first_kl_sample: u32,
}

impl TransformerFitJob {
    fn new(scenario: &crate::ScenarioInput, layout: &crate::policy::TransformerLayout, params: &[f64], options: &FitBaseOptions) -> core::Result<Self> {
        let spec = scenario.to_spec()?.prepared()?;
        let net = Model::new(layout.config(spec.vocab, spec.length))?;
        let seed = seed_from(options.seed, "seed")?;
        let fit = core::transformer_table::FitOptions { steps: options.steps as usize, batch: options.batch as usize, learning_rate: options.learning_rate, seed };
        let first_kl_sample = u32::try_from(options.steps as u64 * options.batch as u64).map_err(|_| invalid("too many fitting samples".into()))?;
        Ok(TransformerFitJob { spec, net, params: params.to_vec(), fit, kl_samples: options.kl_samples.unwrap_or(4096) as usize, first_kl_sample })
    }
}

impl Job for TransformerFitJob {
    type Data = (Vec<f64>, f64, f64);
    type Js = FitBaseOutput;
    fn run(&self) -> core::Result<Self::Data> {
        use core::transformer_table::{fit_base, sampled_kl_from_base};
        let mut params = self.params.clone();
        fit_base(&self.net, &mut params, &self.spec, self.fit)?;
        let (kl, se) = sampled_kl_from_base(&self.net, &params, &self.spec, self.kl_samples, self.fit.seed, self.first_kl_sample)?;
        Ok((params, kl, se))
    }
    fn to_js((params, sampled_kl, sampled_kl_se): Self::Data) -> FitBaseOutput {
        FitBaseOutput { params: Float64Array::new(params), sampled_kl, sampled_kl_se }
    }
}
