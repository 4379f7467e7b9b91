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
use core::sampling::{sample, Prefix, SampleRequest, Samples};
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
        let prefix = self.prefix.as_ref().map(|(tokens, length)| Prefix { tokens, length: *length });
        let request = SampleRequest { count: self.count, seed: self.seed, prefix, first_index: self.first_index };
        let track = Track::new(&self.spec, self.model.as_deref());
        match self.rank_assisted {
            None => self.policy.with_sampler(&self.spec, self.model.as_deref(), |step, _, _| sample(&track, step, &request)),
            Some(rank) => {
                let model = self.model.as_deref().ok_or_else(|| invalid("rank-assisted sampling needs the exact model (for the base's conditional harm)".into()))?;
                let h_base = conditional_harm(model, &BasePolicy { model });
                self.policy.with_sampler(&self.spec, Some(model), |step, _, _| sample(&track, &RankAssistedStep { policy: step, model, h_base: &h_base, rank }, &request))
            }
        }
    }

    fn to_js(samples: Samples) -> SamplesOutput {
        SamplesOutput::from(samples)
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

    /// `sample` on the libuv thread pool (inputs are copied first); a raised `cancel` flag rejects
    /// it with HH_ABORTED.
    #[napi(ts_return_type = "Promise<SamplesOutput>")]
    pub fn sample_async(&self, policy: PolicyInput, options: SampleOptions, cancel: Option<&CancelFlag>) -> napi::Result<AsyncTask<JobTask<SampleJob>>, String> {
        guard(|| Ok(spawn(self.sample_job(&policy, &options)?, cancel)))
    }
}
