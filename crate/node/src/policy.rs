//! Policies from JavaScript: `base`, `tabular` (logits T × S × V), `gibbs` (λ), `mlp` and
//! `transformer` (network shape and parameters), for the exact engine and for sampling.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use crate::core;
use crate::invalid;
use core::estimate::ScoreModel;
use core::gibbs::GibbsPolicy;
use core::mlp::{Activation, Mlp, MlpConfig, MlpPolicy};
use core::model::{Model, ScenarioSpec};
use core::policy::{BasePolicy, Policy, TabularPolicy, TabularTables};
use core::sampling::{BaseStep, ExactStep, StepPolicy};
use core::transformer::{Transformer, TransformerConfig, TransformerPolicy};
use napi::bindgen_prelude::*;
use napi_derive::napi;

/// The shape of an `mlp` policy (its vocabulary and length are the scenario's).
#[napi(object)]
#[derive(Clone)]
pub struct MlpShape {
    /// Number of previous tokens it reads (≥ 1).
    pub order: u32,
    /// Widths of the hidden layers (one or two).
    pub hidden: Vec<u32>,
    /// "tanh" or "relu".
    pub activation: String,
}

impl MlpShape {
    pub fn build(&self, vocab: usize, length: usize) -> core::Result<Mlp> {
        let activation = match self.activation.as_str() {
            "tanh" => Activation::Tanh,
            "relu" => Activation::Relu,
            other => return Err(invalid(format!("mlp.activation must be tanh or relu, got {other:?}"))),
        };
        Mlp::new(MlpConfig { vocab, order: self.order as usize, length, hidden: self.hidden.iter().map(|&h| h as usize).collect(), activation })
    }
}

/// The layout of a `transformer` policy (its vocabulary and length are the scenario's).
#[napi(object)]
#[derive(Clone)]
pub struct TransformerLayout {
    pub layers: u32,
    pub width: u32,
    /// Attention heads (dividing the width).
    pub heads: u32,
    /// Width of each layer's MLP block.
    pub mlp_width: u32,
}

impl TransformerLayout {
    pub fn build(&self, vocab: usize, length: usize) -> core::Result<Transformer> {
        Transformer::new(TransformerConfig { vocab, length, layers: self.layers as usize, width: self.width as usize, heads: self.heads as usize, mlp_width: self.mlp_width as usize })
    }
}

/// Which policy: `base`, `tabular` (with `logits`, T×S×V), `gibbs` (with `lambda`), `mlp` (with
/// `mlp` and `params`) or `transformer` (with `transformer` and `params`).
#[napi(object)]
pub struct PolicyInput {
    pub kind: String,
    pub logits: Option<Float64Array>,
    pub lambda: Option<f64>,
    pub mlp: Option<MlpShape>,
    pub params: Option<Float64Array>,
    pub transformer: Option<TransformerLayout>,
}

/// A tabular policy's tables that a MonteCarlo keeps between calls, with the policy's exact h
/// table once computed.
pub struct CachedTabular {
    pub tables: TabularTables,
    pub harm: OnceLock<Vec<f64>>,
}

pub enum PolicyChoice<'a> {
    Base,
    Tabular(Cow<'a, [f64]>),
    /// Tabular logits whose tables were kept from an earlier call (same logits, same model).
    Cached(Arc<CachedTabular>),
    Gibbs(f64),
    Mlp(Mlp, Cow<'a, [f64]>),
    Transformer(Transformer, Cow<'a, [f64]>),
}

impl PolicyChoice<'_> {
    /// Reads a policy; `spec` gives the mlp its vocabulary and length.
    pub fn parse<'a>(input: &'a PolicyInput, spec: &ScenarioSpec) -> core::Result<PolicyChoice<'a>> {
        match input.kind.as_str() {
            "base" => Ok(PolicyChoice::Base),
            "tabular" => match &input.logits {
                Some(l) => Ok(PolicyChoice::Tabular(Cow::Borrowed(l.as_ref()))),
                None => Err(invalid("policy.logits is required for a tabular policy".into())),
            },
            "gibbs" => match input.lambda {
                Some(l) => Ok(PolicyChoice::Gibbs(l)),
                None => Err(invalid("policy.lambda is required for the gibbs policy".into())),
            },
            "mlp" => match (&input.mlp, &input.params) {
                (Some(shape), Some(params)) => {
                    let mlp = shape.build(spec.vocab, spec.length)?;
                    mlp.check_params(params)?;
                    Ok(PolicyChoice::Mlp(mlp, Cow::Borrowed(params.as_ref())))
                }
                _ => Err(invalid("policy.mlp and policy.params are required for an mlp policy".into())),
            },
            "transformer" => match (&input.transformer, &input.params) {
                (Some(layout), Some(params)) => {
                    let net = layout.build(spec.vocab, spec.length)?;
                    net.check_params(params)?;
                    Ok(PolicyChoice::Transformer(net, Cow::Borrowed(params.as_ref())))
                }
                _ => Err(invalid("policy.transformer and policy.params are required for a transformer policy".into())),
            },
            other => Err(invalid(format!("policy.kind must be base, tabular, gibbs, mlp or transformer, got {other:?}"))),
        }
    }

    pub fn into_owned(self) -> PolicyChoice<'static> {
        match self {
            PolicyChoice::Base => PolicyChoice::Base,
            PolicyChoice::Tabular(l) => PolicyChoice::Tabular(Cow::Owned(l.into_owned())),
            PolicyChoice::Cached(c) => PolicyChoice::Cached(c),
            PolicyChoice::Gibbs(l) => PolicyChoice::Gibbs(l),
            PolicyChoice::Mlp(m, p) => PolicyChoice::Mlp(m, Cow::Owned(p.into_owned())),
            PolicyChoice::Transformer(n, p) => PolicyChoice::Transformer(n, Cow::Owned(p.into_owned())),
        }
    }

    /// Calls `f` with the policy as the exact engine sees it (an mlp is tabulated over the states, a
    /// transformer over the prefix tree, which the model must then be).
    pub fn with<T>(&self, model: &Model, f: impl FnOnce(&dyn Policy) -> T) -> core::Result<T> {
        Ok(match self {
            PolicyChoice::Base => f(&BasePolicy { model }),
            PolicyChoice::Tabular(logits) => f(&TabularPolicy::new(model, logits)?),
            PolicyChoice::Cached(c) => f(&c.tables.policy(model)),
            PolicyChoice::Gibbs(lambda) => f(&GibbsPolicy::new(model, *lambda)?),
            PolicyChoice::Mlp(mlp, params) => {
                let logits = mlp.tabulate(params, model)?;
                f(&TabularPolicy::new(model, &logits)?)
            }
            PolicyChoice::Transformer(net, params) => {
                let logits = core::transformer_table::tabulate(net, params, model)?;
                f(&TabularPolicy::new(model, &logits)?)
            }
        })
    }

    /// Calls `f` with the policy as the sampler sees it, its differentiable view (tabular and mlp,
    /// and the base as tabular logits log p when the exact model is there) and, when the exact model
    /// is there, its exact-engine view (for exact h_t).
    pub fn with_sampler<T>(
        &self,
        spec: &ScenarioSpec,
        model: Option<&Model>,
        f: impl FnOnce(&dyn StepPolicy, Option<&dyn ScoreModel>, Option<&dyn Policy>) -> core::Result<T>,
    ) -> core::Result<T> {
        let need_model = || model.ok_or_else(|| invalid("this policy is defined on exact states: give the exact model".into()));
        match self {
            PolicyChoice::Base => match model {
                Some(model) => {
                    let logits = base_logits(model)?;
                    let tabular = TabularPolicy::new(model, &logits)?;
                    f(&BaseStep { spec }, Some(&ExactStep(&tabular)), Some(&BasePolicy { model }))
                }
                None => f(&BaseStep { spec }, None, None),
            },
            PolicyChoice::Tabular(logits) => {
                let tabular = TabularPolicy::new(need_model()?, logits)?;
                f(&ExactStep(&tabular), Some(&ExactStep(&tabular)), Some(&tabular))
            }
            PolicyChoice::Cached(c) => {
                let tabular = c.tables.policy(need_model()?);
                f(&ExactStep(&tabular), Some(&ExactStep(&tabular)), Some(&tabular))
            }
            PolicyChoice::Gibbs(lambda) => {
                let gibbs = GibbsPolicy::new(need_model()?, *lambda)?;
                f(&ExactStep(&gibbs), None, Some(&gibbs))
            }
            PolicyChoice::Mlp(mlp, params) => {
                let policy = MlpPolicy::new(mlp, params);
                match model {
                    Some(model) => {
                        let logits = mlp.tabulate(params, model)?;
                        f(&policy, Some(&policy), Some(&TabularPolicy::new(model, &logits)?))
                    }
                    None => f(&policy, Some(&policy), None),
                }
            }
            // No per-input score model (its scores come from batched passes); an exact view only on
            // a prefix tree, where the transformer is a function of the state.
            PolicyChoice::Transformer(net, params) => {
                let policy = TransformerPolicy { model: net, params };
                match model.map(|m| (m, core::transformer_table::tabulate(net, params, m))) {
                    Some((model, Ok(logits))) => f(&policy, None, Some(&TabularPolicy::new(model, &logits)?)),
                    _ => f(&policy, None, None),
                }
            }
        }
    }
}

/// The base as tabular logits: log p at every (position, live state).
pub fn base_logits(model: &Model) -> core::Result<Vec<f64>> {
    let (n, v) = (model.num_states(), model.vocab());
    let mut logits = core::alloc::table(&[model.length(), n, v], 0.0, "base's T × S × V logits table")?;
    for (i, row) in logits.chunks_exact_mut(v).enumerate() {
        let s = i % n;
        if model.live[s] {
            row.iter_mut().zip(model.base_row(s)).for_each(|(l, p)| *l = p.ln());
        }
    }
    Ok(logits)
}
