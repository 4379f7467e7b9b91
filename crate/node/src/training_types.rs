//! The input and output objects of training and attacks (objectives, fine-tuning losses, sampled
//! steps), shared by the ExactModel and MonteCarlo classes.

use crate::core;
use core::model::Model;
use core::objective::{Anchor, Objective, ObjectiveKind, ObjectiveOptions, ObjectiveValue};
use core::rl::{RlAlgorithm, RlStep, DEFAULT_PPO_CLIP, DEFAULT_PPO_EPOCHS};
use napi::bindgen_prelude::*;
use napi_derive::napi;

/// Which alignment objective (see crate/core/src/objective.rs).
#[napi(string_enum = "kebab-case")]
pub enum ObjectiveName {
    Standard,
    Deep,
    DeepAnchored,
    Augment,
}

/// The augment objective's KL anchor: P_init or P_base.
#[napi(string_enum = "lowercase")]
pub enum AnchorName {
    Init,
    Base,
}

/// An alignment objective; absent settings take the core's defaults.
#[napi(object)]
pub struct ObjectiveInput {
    pub kind: ObjectiveName,
    pub lambda: f64,
    pub mu: Option<f64>,
    /// w_t = γ^{t−1} (default 1) unless `weights` are given.
    pub gamma: Option<f64>,
    pub weights: Option<Float64Array>,
    /// Recovery token ids R.
    pub recovery: Vec<u32>,
    /// α, the weight of the augment objective's recovery term (default DEFAULT_MIX).
    pub mix: Option<f64>,
    /// The augment objective's KL anchor (default init).
    pub anchor: Option<AnchorName>,
}

/// α of the augment objective when none is given (Qi et al.'s 0.2).
#[napi]
pub const DEFAULT_MIX: f64 = core::objective::DEFAULT_MIX;

pub(crate) fn objective_from(input: &ObjectiveInput, model: &Model) -> core::Result<Objective> {
    let kind = match input.kind {
        ObjectiveName::Standard => ObjectiveKind::Standard,
        ObjectiveName::Deep => ObjectiveKind::Deep,
        ObjectiveName::DeepAnchored => ObjectiveKind::DeepAnchored,
        ObjectiveName::Augment => ObjectiveKind::Augment,
    };
    let options = ObjectiveOptions {
        mu: input.mu,
        gamma: input.gamma,
        weights: input.weights.as_ref().map(|w| w.to_vec()),
        recovery: input.recovery.clone(),
        mix: input.mix,
        anchor: input.anchor.as_ref().map(|a| match a {
            AnchorName::Init => Anchor::Init,
            AnchorName::Base => Anchor::Base,
        }),
    };
    Objective::new(kind, input.lambda, options, model.vocab(), model.length())
}

#[napi(object)]
pub struct ObjectiveOutput {
    pub total: f64,
    pub expected_harm: f64,
    pub kl: f64,
    pub kl_per_position: Float64Array,
    pub penalty: f64,
    pub anchor_kl: f64,
    pub sft_loss: f64,
    /// Mean recovery probability on Q's prefixes per position (NaN where Q has none).
    pub recovery: Float64Array,
    /// ∂J/∂θ: T × S × V for tabular policies, P for mlp and transformer policies.
    pub gradient: Option<Float64Array>,
    /// ||∂J/∂θ_t|| per position (in logit space).
    pub grad_norm: Float64Array,
}

pub(crate) fn position_norms(gradient: Option<&Vec<f64>>, length: usize) -> Vec<f64> {
    match gradient {
        None => vec![f64::NAN; length],
        Some(g) => g.chunks_exact(g.len() / length).map(|b| b.iter().map(|x| x * x).sum::<f64>().sqrt()).collect(),
    }
}

pub(crate) fn to_objective_output(ObjectiveData(v, gradient, norms): ObjectiveData) -> ObjectiveOutput {
    ObjectiveOutput {
        total: v.total,
        expected_harm: v.expected_harm,
        kl: v.kl,
        kl_per_position: Float64Array::new(v.kl_per_position),
        penalty: v.penalty,
        anchor_kl: v.anchor_kl,
        sft_loss: v.sft_loss,
        recovery: Float64Array::new(v.recovery),
        gradient: gradient.map(Float64Array::new),
        grad_norm: Float64Array::new(norms),
    }
}

/// An objective's value, its gradient and the gradient's per-position norms.
pub struct ObjectiveData(pub ObjectiveValue, pub Option<Vec<f64>>, pub Vec<f64>);

#[napi(object)]
pub struct FineTuneOptions {
    /// β_t per position (default Qi et al.'s 0.5, 2, 2, 2, 2, 0.1, …).
    pub beta: Option<Float64Array>,
    /// Floor of the logged loss's token weights (default 1e-3).
    pub floor: Option<f64>,
    /// A minibatch of harmful responses (N × T tokens, 0xFFFFFFFF after the end); default: all of Q, exactly.
    pub responses: Option<Uint32Array>,
}

#[napi(object)]
pub struct FixedPointOutput {
    pub logits: Float64Array,
    pub iterations: u32,
    pub change: f64,
}

#[napi(object)]
pub struct FineTuneOutput {
    pub loss: f64,
    pub loss_per_position: Float64Array,
    pub grad_norm: Float64Array,
    pub gradient: Float64Array,
    /// The token mean of −w_t·log π(y_t) as Qi et al.'s code logs it.
    pub logged_loss: f64,
    /// Per position, the mean over responses of the per-token loss's gradient norm (logit space).
    pub token_grad_norm: Float64Array,
}

/// The fine-tuning attack's loss: plain SFT, or constrained against the aligned policy.
#[napi(string_enum = "lowercase")]
pub enum FineTuneName {
    Sft,
    Constrained,
}

/// The sampled training algorithm.
#[napi(string_enum = "kebab-case")]
pub enum AlgorithmName {
    Reinforce,
    ReinforceInnovation,
    Ppo,
}

/// The policies sampled training takes.
#[napi(string_enum = "lowercase")]
#[derive(PartialEq, Eq)]
pub enum TrainableKind {
    Tabular,
    Mlp,
    Transformer,
}

#[napi(object)]
pub struct RlOptions {
    pub algorithm: AlgorithmName,
    pub samples: f64,
    pub seed: f64,
    /// RNG index of the batch's first response (step × samples keeps batches independent).
    pub first_index: Option<u32>,
    pub lambda: f64,
    /// PPO's clip ε (default 0.2) and epochs per batch (default 4).
    pub clip: Option<f64>,
    pub epochs: Option<u32>,
    /// Transformer policies: also descend the deep objective's recovery penalty on these harmful responses.
    pub penalty: Option<PenaltyInput>,
    /// reinforce-innovation: where h_t comes from, "exact" (the exact model's table) or "rollouts"
    /// of the policy being trained (default: exact with the exact model, else rollouts).
    pub harm: Option<crate::monte_carlo::HarmSource>,
    /// M, the rollouts per prefix and set (default 4, the core's DEFAULT_TRAINING_ROLLOUTS); giving it asks
    /// for rollouts.
    pub rollouts: Option<u32>,
    /// Bytes the rollout buffers (2 × samples × (T+1) f64) may take (default: the lazy tabular
    /// policy's budget, else 4 GiB); more throws HH_OUT_OF_MEMORY before sampling.
    pub memory_budget: Option<f64>,
}

/// Where a reinforce-innovation step reads h_t.
#[derive(Clone, Copy)]
pub enum InnovationHarm {
    /// The exact conditional-harm table of the policy being trained.
    Exact,
    /// M rollouts per prefix and set.
    Rollouts(usize),
}

/// The core's h source of a step: rollouts, or the exact table built for `Exact` (None: no innovation).
pub fn harm_source(plan: Option<InnovationHarm>, table: Option<&[f64]>) -> Option<core::estimate::HarmSource<'_>> {
    match (plan?, table) {
        (InnovationHarm::Rollouts(m), _) => Some(core::estimate::HarmSource::Rollouts(m)),
        (InnovationHarm::Exact, table) => table.map(core::estimate::HarmSource::Exact),
    }
}

impl RlOptions {
    /// The algorithm with PPO's defaults filled in, once λ is checked (shared by every sampled step).
    pub fn checked_algorithm(&self) -> core::Result<RlAlgorithm> {
        if !(self.lambda >= 0.0 && self.lambda.is_finite()) {
            return Err(crate::invalid(format!("lambda must be a finite number ≥ 0, got {}", self.lambda)));
        }
        Ok(match self.algorithm {
            AlgorithmName::Reinforce => RlAlgorithm::Reinforce,
            AlgorithmName::ReinforceInnovation => RlAlgorithm::ReinforceInnovation,
            AlgorithmName::Ppo => RlAlgorithm::Ppo { clip: self.clip.unwrap_or(DEFAULT_PPO_CLIP), epochs: self.epochs.map_or(DEFAULT_PPO_EPOCHS, |e| e as usize) },
        })
    }

    /// Where reinforce-innovation reads h_t (None for the other algorithms): exact when asked, or by
    /// default when `exact_available`; rollouts when asked (`harm` or `rollouts`) or without the
    /// exact model, their buffers for `count` responses of length `length` checked against the
    /// budget (`memoryBudget`, else `default_budget`).
    pub fn innovation_harm(&self, exact_available: bool, count: usize, length: usize, default_budget: u64) -> core::Result<Option<InnovationHarm>> {
        use crate::monte_carlo::HarmSource;
        if !matches!(self.algorithm, AlgorithmName::ReinforceInnovation) {
            if self.harm.is_some() || self.rollouts.is_some() {
                return Err(crate::invalid("harm, rollouts: only reinforce-innovation reads h_t".into()));
            }
            return Ok(None);
        }
        let wants_rollouts = match self.harm {
            Some(HarmSource::Exact) if self.rollouts.is_some() => return Err(crate::invalid("rollouts: not with harm \"exact\"".into())),
            Some(HarmSource::Exact) if !exact_available => return Err(crate::invalid("harm \"exact\" needs the exact model (this policy or scenario has none: use rollouts)".into())),
            Some(HarmSource::Exact) => false,
            Some(HarmSource::Rollouts) => true,
            None => self.rollouts.is_some() || !exact_available,
        };
        if !wants_rollouts {
            return Ok(Some(InnovationHarm::Exact));
        }
        let m = self.rollouts.map_or(core::rl::DEFAULT_TRAINING_ROLLOUTS, |m| m as usize);
        if m == 0 {
            return Err(crate::invalid("rollouts must be at least 1".into()));
        }
        let budget = match self.memory_budget {
            None => default_budget,
            Some(b) if b.is_finite() && b >= 1.0 => b as u64,
            Some(b) => return Err(crate::invalid(format!("memoryBudget must be a positive number of bytes, got {b}"))),
        };
        core::rl::check_rollout_budget(count, length, budget)?;
        Ok(Some(InnovationHarm::Rollouts(m)))
    }
}

/// The deep objective's recovery penalty μ·E_Q[Σ_t w_t·(1 − π(R | y<t))] on sampled harmful responses.
#[napi(object)]
pub struct PenaltyInput {
    /// N × T tokens, 0xFFFFFFFF after the end.
    pub responses: Uint32Array,
    /// Weight of each response (its harm).
    pub weights: Float64Array,
    pub mu: f64,
    /// w_t, length T.
    pub position_weights: Float64Array,
    /// Recovery token ids R.
    pub recovery: Vec<u32>,
}

#[napi(object)]
pub struct RlStepOutput {
    pub mean_harm: f64,
    pub mean_kl: f64,
    pub objective: f64,
    pub grad_norm: Float64Array,
}

impl From<RlStep> for RlStepOutput {
    fn from(step: RlStep) -> Self {
        RlStepOutput { mean_harm: step.mean_harm, mean_kl: step.mean_kl, objective: step.objective, grad_norm: Float64Array::new(step.grad_norm) }
    }
}
