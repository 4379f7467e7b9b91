//! Which policy a computation runs: the base, a tabular policy (logits T × S × V), the Gibbs policy
//! at λ, an mlp or a transformer (network and parameters), and how each is seen by the exact engine
//! and by the sampler. The binding only converts its inputs into a `PolicySpec`.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use crate::estimate::ScoreModel;
use crate::gibbs::GibbsPolicy;
use crate::lazy_tabular::LazyTabular;
use crate::mlp::{Mlp, MlpConfig, MlpPolicy};
use crate::model::{Model, ScenarioSpec};
use crate::policy::{BasePolicy, Policy, TabularPolicy, TabularTables};
use crate::sampling::{BaseStep, ExactStep, StepPolicy};
use crate::transformer::{Transformer, TransformerConfig, TransformerPolicy};
use crate::{Error, Result};

/// A tabular policy's tables that a MonteCarlo keeps between calls, with the policy's exact h
/// table once computed.
pub struct CachedTabular {
    pub tables: TabularTables,
    pub harm: OnceLock<Vec<f64>>,
}

pub enum PolicySpec<'a> {
    Base,
    Tabular(Cow<'a, [f64]>),
    /// Tabular logits whose tables were kept from an earlier call (same logits, same model).
    Cached(Arc<CachedTabular>),
    Gibbs(f64),
    Mlp(Mlp, Cow<'a, [f64]>),
    Transformer(Transformer, Cow<'a, [f64]>),
    /// Tabular logits stored per visited (position, context, automaton state), the base elsewhere.
    LazyTabular(Arc<LazyTabular>),
}

impl<'a> PolicySpec<'a> {
    /// An mlp policy over `config`, its parameters checked against the network's size.
    pub fn mlp(config: MlpConfig, params: Cow<'a, [f64]>) -> Result<PolicySpec<'a>> {
        let mlp = Mlp::new(config)?;
        mlp.check_params(&params)?;
        Ok(PolicySpec::Mlp(mlp, params))
    }

    /// A transformer policy over `config`, its parameters checked against the network's size.
    pub fn transformer(config: TransformerConfig, params: Cow<'a, [f64]>) -> Result<PolicySpec<'a>> {
        let net = Transformer::new(config)?;
        net.check_params(&params)?;
        Ok(PolicySpec::Transformer(net, params))
    }

    pub fn into_owned(self) -> PolicySpec<'static> {
        match self {
            PolicySpec::Base => PolicySpec::Base,
            PolicySpec::Tabular(l) => PolicySpec::Tabular(Cow::Owned(l.into_owned())),
            PolicySpec::Cached(c) => PolicySpec::Cached(c),
            PolicySpec::Gibbs(l) => PolicySpec::Gibbs(l),
            PolicySpec::Mlp(m, p) => PolicySpec::Mlp(m, Cow::Owned(p.into_owned())),
            PolicySpec::Transformer(n, p) => PolicySpec::Transformer(n, Cow::Owned(p.into_owned())),
            PolicySpec::LazyTabular(l) => PolicySpec::LazyTabular(l),
        }
    }

    /// Calls `f` with the policy as the exact engine sees it (an mlp is tabulated over the states, a
    /// transformer over the prefix tree, which the model must then be).
    pub fn with<T>(&self, model: &Model, f: impl FnOnce(&dyn Policy) -> T) -> Result<T> {
        Ok(match self {
            PolicySpec::Base => f(&BasePolicy { model }),
            PolicySpec::Tabular(logits) => f(&TabularPolicy::new(model, logits)?),
            PolicySpec::Cached(c) => f(&c.tables.policy(model)),
            PolicySpec::Gibbs(lambda) => f(&GibbsPolicy::new(model, *lambda)?),
            PolicySpec::Mlp(mlp, params) => {
                let logits = mlp.tabulate(params, model)?;
                f(&TabularPolicy::new(model, &logits)?)
            }
            PolicySpec::Transformer(net, params) => {
                let logits = crate::transformer_table::tabulate(net, params, model)?;
                f(&TabularPolicy::new(model, &logits)?)
            }
            PolicySpec::LazyTabular(lazy) => f(&TabularPolicy::new(model, &lazy.dense(model)?)?),
        })
    }

    /// `with` for a computation that also returns a gradient over the policy's logits (T × S × V):
    /// for an mlp or a transformer the gradient is pulled back to its parameters (chain rule through
    /// the tabulated logits); for the other kinds it stays over the logits.
    pub fn with_gradient<T>(&self, model: &Model, f: impl FnOnce(&dyn Policy) -> Result<(T, Option<Vec<f64>>)>) -> Result<(T, Option<Vec<f64>>)> {
        match self {
            PolicySpec::Mlp(mlp, params) => {
                let logits = mlp.tabulate(params, model)?;
                let (value, logit_grad) = f(&TabularPolicy::new(model, &logits)?)?;
                let grad = logit_grad.map(|g| mlp.pull_back(params, model, &g)).transpose()?;
                Ok((value, grad))
            }
            PolicySpec::Transformer(net, params) => {
                let logits = crate::transformer_table::tabulate(net, params, model)?;
                let (value, logit_grad) = f(&TabularPolicy::new(model, &logits)?)?;
                let grad = logit_grad.map(|g| crate::transformer_table::pull_back(net, params, model, &g)).transpose()?;
                Ok((value, grad))
            }
            other => other.with(model, f)?,
        }
    }

    /// Calls `f` with the policy as the sampler sees it, its differentiable view (tabular and mlp,
    /// and the base as tabular logits log p when the exact model is there) and, when the exact model
    /// is there, its exact-engine view (for exact h_t).
    pub fn with_sampler<T>(
        &self,
        spec: &ScenarioSpec,
        model: Option<&Model>,
        f: impl FnOnce(&dyn StepPolicy, Option<&dyn ScoreModel>, Option<&dyn Policy>) -> Result<T>,
    ) -> Result<T> {
        let need_model = || model.ok_or_else(|| Error::InvalidArgument("this policy is defined on exact states: give the exact model".into()));
        match self {
            PolicySpec::Base => match model {
                Some(model) => {
                    let logits = base_logits(model)?;
                    let tabular = TabularPolicy::new(model, &logits)?;
                    f(&BaseStep { spec }, Some(&ExactStep(&tabular)), Some(&BasePolicy { model }))
                }
                None => f(&BaseStep { spec }, None, None),
            },
            PolicySpec::Tabular(logits) => {
                let tabular = TabularPolicy::new(need_model()?, logits)?;
                f(&ExactStep(&tabular), Some(&ExactStep(&tabular)), Some(&tabular))
            }
            PolicySpec::Cached(c) => {
                let tabular = c.tables.policy(need_model()?);
                f(&ExactStep(&tabular), Some(&ExactStep(&tabular)), Some(&tabular))
            }
            PolicySpec::Gibbs(lambda) => {
                let gibbs = GibbsPolicy::new(need_model()?, *lambda)?;
                f(&ExactStep(&gibbs), None, Some(&gibbs))
            }
            PolicySpec::Mlp(mlp, params) => {
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
            PolicySpec::Transformer(net, params) => {
                let policy = TransformerPolicy { model: net, params };
                match model.map(|m| (m, crate::transformer_table::tabulate(net, params, m))) {
                    Some((model, Ok(logits))) => f(&policy, None, Some(&TabularPolicy::new(model, &logits)?)),
                    _ => f(&policy, None, None),
                }
            }
            // No score model (its gradient is the training step's); the dense view when the model is there.
            PolicySpec::LazyTabular(lazy) => match model {
                Some(model) => f(&lazy.view(spec), None, Some(&TabularPolicy::new(model, &lazy.dense(model)?)?)),
                None => f(&lazy.view(spec), None, None),
            },
        }
    }
}

/// The base as tabular logits: log p at every (position, live state).
pub fn base_logits(model: &Model) -> Result<Vec<f64>> {
    let (n, v) = (model.num_states(), model.vocab());
    let mut logits = crate::alloc::table(&[model.length(), n, v], 0.0, "base's T × S × V logits table")?;
    for (i, row) in logits.chunks_exact_mut(v).enumerate() {
        let s = i % n;
        if model.live[s] {
            row.iter_mut().zip(model.base_row(s)).for_each(|(l, p)| *l = p.ln());
        }
    }
    Ok(logits)
}
