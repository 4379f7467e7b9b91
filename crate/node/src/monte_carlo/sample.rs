//! MonteCarlo's sampling of responses (the sampled attacks' workhorse), sync and async: one job
//! that both forms run.

use std::sync::Arc;

use crate::cancel::CancelFlag;
use crate::core;
use crate::job::{spawn, Job, JobTask};
use crate::monte_carlo::{MonteCarlo, SampleOptions, SamplesOutput};
use crate::policy::{policy_spec, PolicyInput};
use crate::{count_from, guard, invalid, seed_from};
use core::attack::RankAssistedStep;
use core::exact::conditional_harm;
use core::model::{Model, ScenarioSpec};
use core::policy::BasePolicy;
use core::policy_spec::PolicySpec;
use core::sample_into::{sample_into, SamplesMut};
use core::sampling::{sample, Prefix, SampleRequest, Samples, StepPolicy};
use core::walk::Track;
use napi::bindgen_prelude::*;
use napi_derive::napi;

/// Everything one sampling call needs, owned, so that it can run on the pool.
pub struct SampleJob {
    spec: Arc<ScenarioSpec>,
    model: Option<Arc<Model>>,
    policy: PolicySpec<'static>,
    count: usize,
    seed: u64,
    first_index: u32,
    /// Forced first tokens and how many of them.
    prefix: Option<(Vec<u32>, usize)>,
    rank_assisted: Option<usize>,
}

impl Job for SampleJob {
    type Data = Samples;
    type Js = SamplesOutput;

    fn run(&self) -> core::Result<Samples> {
        self.run_with(|track, step, request| sample(track, step, request))
    }

    fn to_js(samples: Samples) -> SamplesOutput {
        SamplesOutput::from(samples)
    }
}

impl SampleJob {
    /// Runs `draw` (sampling into new or caller-owned outputs) with the job's policy, or its
    /// rank-assisted attacker.
    fn run_with<R>(&self, draw: impl FnOnce(&Track, &dyn StepPolicy, &SampleRequest) -> core::Result<R>) -> core::Result<R> {
        let prefix = self.prefix.as_ref().map(|(tokens, length)| Prefix { tokens, length: *length });
        let request = SampleRequest { count: self.count, seed: self.seed, prefix, first_index: self.first_index };
        let track = Track::new(&self.spec, self.model.as_deref());
        match self.rank_assisted {
            None => self.policy.with_sampler(&self.spec, self.model.as_deref(), |step, _, _| draw(&track, step, &request)),
            Some(rank) => {
                let model = self.model.as_deref().ok_or_else(|| invalid("rank-assisted sampling needs the exact model (for the base's conditional harm)".into()))?;
                let h_base = conditional_harm(model, &BasePolicy { model });
                self.policy.with_sampler(&self.spec, Some(model), |step, _, _| draw(&track, &RankAssistedStep { policy: step, model, h_base: &h_base, rank }, &request))
            }
        }
    }
}

/// Arrays a `sampleInto` call overwrites, shaped as `SamplesOutput`'s (an earlier batch's arrays
/// of the same N fit).
#[napi(object)]
pub struct SampleBuffers {
    pub tokens: Uint32Array,
    pub log_probs: Float64Array,
    pub harm: Float64Array,
    pub emitted: Uint32Array,
    pub states: Option<Uint32Array>,
}

impl SampleBuffers {
    /// The arrays' memory must not overlap: each is written as its own output.
    fn check_disjoint(&self) -> core::Result<()> {
        fn bytes<T>(name: &'static str, a: &[T]) -> (&'static str, usize, usize) {
            (name, a.as_ptr() as usize, std::mem::size_of_val(a))
        }
        let mut spans = vec![
            bytes("tokens", &self.tokens),
            bytes("logProbs", &self.log_probs),
            bytes("harm", &self.harm),
            bytes("emitted", &self.emitted),
        ];
        if let Some(states) = &self.states {
            spans.push(bytes("states", states));
        }
        for (k, &(a, start_a, len_a)) in spans.iter().enumerate() {
            for &(b, start_b, len_b) in &spans[k + 1..] {
                if len_a > 0 && len_b > 0 && start_a < start_b + len_b && start_b < start_a + len_a {
                    return Err(invalid(format!("{a} and {b} share memory: each output needs its own array")));
                }
            }
        }
        Ok(())
    }
}

#[napi]
impl MonteCarlo {
    fn sample_job(&self, policy: &PolicyInput, options: &SampleOptions) -> core::Result<SampleJob> {
        Ok(SampleJob {
            spec: self.spec.clone(),
            model: self.model.clone(),
            policy: self.cached(policy_spec(policy, &self.spec)?)?.into_owned(),
            count: count_from(options.count, "count")?,
            seed: seed_from(options.seed, "seed")?,
            first_index: options.first_index.unwrap_or(0),
            prefix: options.prefix.as_ref().map(|tokens| (tokens.to_vec(), options.prefix_length.unwrap_or(tokens.len() as u32) as usize)),
            rank_assisted: options.rank_assisted.map(|r| r as usize),
        })
    }

    /// Samples responses under a policy (synchronous).
    #[napi]
    pub fn sample(&self, policy: PolicyInput, options: SampleOptions) -> napi::Result<SamplesOutput, String> {
        guard(|| self.sample_job(&policy, &options)?.run()).map(SamplesOutput::from)
    }

    /// `sample` into the caller's arrays (synchronous): every entry overwritten, the same
    /// responses bit for bit, no outputs allocated.
    #[napi]
    pub fn sample_into(&self, policy: PolicyInput, options: SampleOptions, mut out: SampleBuffers) -> napi::Result<(), String> {
        guard(|| {
            out.check_disjoint()?;
            // SAFETY: a synchronous call on the JS thread; the arrays do not overlap (checked), and
            // nothing else touches them meanwhile.
            let buffers = unsafe {
                SamplesMut {
                    tokens: out.tokens.as_mut(),
                    log_probs: out.log_probs.as_mut(),
                    harm: out.harm.as_mut(),
                    emitted: out.emitted.as_mut(),
                    states: out.states.as_mut().map(|states| states.as_mut()),
                }
            };
            self.sample_job(&policy, &options)?.run_with(|track, step, request| sample_into(track, step, request, buffers))
        })
    }

    /// `sample` on the libuv thread pool (inputs are copied first); a raised `cancel` flag rejects
    /// it with HH_ABORTED.
    #[napi(ts_return_type = "Promise<SamplesOutput>")]
    pub fn sample_async(&self, policy: PolicyInput, options: SampleOptions, cancel: Option<&CancelFlag>) -> napi::Result<AsyncTask<JobTask<SampleJob>>, String> {
        guard(|| Ok(spawn(self.sample_job(&policy, &options)?, cancel)))
    }
}
