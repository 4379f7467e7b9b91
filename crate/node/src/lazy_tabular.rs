//! The LazyTabular class: a lazily keyed tabular policy (rows per visited (position, context,
//! automaton state), the base elsewhere) kept in the core between sampled training steps, and its
//! stored rows as plain arrays (`SparseRows`), the form policies take in `PolicyInput`.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::cancel::{flag_of, CancelFlag};
use crate::core;
use crate::monte_carlo::MonteCarlo;
use crate::optimizer::{Optimizer, Rule};
use crate::training_types::{harm_source, InnovationHarm, RlOptions, RlStepOutput};
use crate::{count_from, guard, guard_task, invalid, seed_from, ScenarioInput};
use core::exact::conditional_harm;
use core::lazy_tabular::{LazyTabular as Lazy, RowKey};
use core::model::{Model, ScenarioSpec, DEFAULT_MEMORY_BUDGET};
use core::rl::RlStep;
use core::policy::TabularPolicy;
use core::sampling::SampleRequest;
use core::walk::Track;
use napi::bindgen_prelude::*;
use napi_derive::napi;

/// Stored rows of a lazy tabular policy, one entry per row in each array.
#[napi(object)]
pub struct SparseRows {
    /// Position t = 1..T of each row.
    pub positions: Uint32Array,
    /// Scenario context of each row (whole numbers; doubles, as contexts may exceed 2^32).
    pub contexts: Float64Array,
    /// Automaton state of each row.
    pub automata: Uint32Array,
    /// rows × V softmax logits (−∞ for tokens never emitted).
    pub logits: Float64Array,
}

/// The policy stored in `rows`, checked against `spec` (`budget`: bytes its rows may take).
pub fn lazy_from_rows(rows: &SparseRows, spec: &ScenarioSpec, budget: u64) -> core::Result<Lazy> {
    let n = rows.positions.len();
    if rows.contexts.len() != n || rows.automata.len() != n {
        return Err(core::Error::PolicyInvalid(format!("sparse rows: {n} positions, {} contexts, {} automaton states (must be equal)", rows.contexts.len(), rows.automata.len())));
    }
    let keys = (0..n)
        .map(|i| {
            let c = rows.contexts[i];
            if !(c >= 0.0 && c.fract() == 0.0 && c < 2f64.powi(53)) {
                return Err(core::Error::PolicyInvalid(format!("sparse row {i}: context {c} is not a whole number ≥ 0")));
            }
            Ok(RowKey { position: rows.positions[i], context: c as u64, automaton: rows.automata[i] })
        })
        .collect::<core::Result<Vec<_>>>()?;
    Lazy::from_rows(spec, budget, &keys, &rows.logits)
}

/// A tabular policy keyed lazily by (position, context, automaton state): it needs no exact state
/// index, so it trains on scenarios of any size, with memory proportional to the keys visited.
#[napi]
pub struct LazyTabular {
    /// Shared with an async training step, which steps a copy and writes it back when it resolves
    /// (an aborted step leaves the policy unchanged).
    inner: Arc<Mutex<Lazy>>,
}

#[napi]
impl LazyTabular {
    /// The base policy over `scenario` (no rows stored), or the policy of `rows`. Its rows may take
    /// `scenario.memoryBudget` bytes (default 4 GiB); more throws HH_OUT_OF_MEMORY.
    #[napi(constructor)]
    pub fn new(scenario: ScenarioInput, rows: Option<SparseRows>) -> napi::Result<Self, String> {
        guard(|| {
            let budget = match scenario.memory_budget {
                None => DEFAULT_MEMORY_BUDGET,
                Some(b) if b.is_finite() && b > 0.0 => b as u64,
                Some(b) => return Err(invalid(format!("memoryBudget must be a positive number of bytes, got {b}"))),
            };
            let spec = scenario.to_spec()?;
            let inner = match &rows {
                Some(rows) => lazy_from_rows(rows, &spec, budget)?,
                None => Lazy::new(&spec, budget),
            };
            Ok(LazyTabular { inner: Arc::new(Mutex::new(inner)) })
        })
    }

    /// Number of rows stored: the (position, context, automaton state) keys visited so far.
    #[napi(getter)]
    pub fn num_rows(&self) -> u32 {
        self.lazy().num_rows() as u32
    }

    /// The stored rows, in key order.
    #[napi]
    pub fn rows(&self) -> SparseRows {
        let (keys, logits) = self.lazy().rows();
        SparseRows {
            positions: Uint32Array::new(keys.iter().map(|k| k.position).collect()),
            contexts: Float64Array::new(keys.iter().map(|k| k.context as f64).collect()),
            automata: Uint32Array::new(keys.iter().map(|k| k.automaton).collect()),
            logits: Float64Array::new(logits),
        }
    }

    /// One sampled training step on λ·E[H] + KL: samples a batch from the policy, stores the rows
    /// it visits (at the base) and updates the stored rows with `optimizer` (Adam or SGD; its state
    /// grows with the rows). The innovation variant reads h_t from `mc`'s exact model when it has
    /// one, else from rollouts of the policy (`options.harm`, `options.rollouts`), their buffers
    /// checked against `options.memoryBudget` or this policy's budget.
    #[napi]
    pub fn rl_step(&self, mc: &MonteCarlo, optimizer: &Optimizer, options: RlOptions) -> napi::Result<RlStepOutput, String> {
        guard(|| {
            let mut lazy = self.lazy();
            let request = LazyStepRequest::new(mc, &options, lazy.budget())?;
            request.run(&mut lazy, &mut optimizer.lock())
        })
        .map(RlStepOutput::from)
    }

    /// `rlStep` on the libuv thread pool: it steps copies of the policy and the optimizer and writes
    /// them back when the promise resolves (the same numbers as `rlStep`). A raised `cancel` flag
    /// rejects it with HH_ABORTED and leaves both unchanged.
    #[napi(ts_return_type = "Promise<RlStepOutput>")]
    pub fn rl_step_async(&self, mc: &MonteCarlo, optimizer: &Optimizer, options: RlOptions, cancel: Option<&CancelFlag>) -> napi::Result<AsyncTask<LazyStepTask>, String> {
        guard(|| {
            let lazy = self.lazy().clone();
            let request = LazyStepRequest::new(mc, &options, lazy.budget())?;
            let work = Some((lazy, optimizer.lock().clone()));
            Ok(AsyncTask::new(LazyStepTask { request, work, policy: self.inner.clone(), optimizer: optimizer.rule.clone(), cancel: flag_of(cancel) }))
        })
    }
}

impl LazyTabular {
    fn lazy(&self) -> MutexGuard<'_, Lazy> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A lazy step's inputs, read and checked (`budget`: the policy's, the rollouts' default).
pub struct LazyStepRequest {
    spec: Arc<ScenarioSpec>,
    model: Option<Arc<Model>>,
    algorithm: core::rl::RlAlgorithm,
    request: SampleRequest<'static>,
    lambda: f64,
    innovation: Option<InnovationHarm>,
}

impl LazyStepRequest {
    fn new(mc: &MonteCarlo, options: &RlOptions, budget: u64) -> core::Result<Self> {
        let algorithm = options.checked_algorithm()?;
        if options.penalty.is_some() {
            return Err(invalid("a sampled recovery penalty is for transformer policies only".into()));
        }
        let (spec, model) = mc.shared();
        let request = SampleRequest { count: count_from(options.samples, "samples")?, seed: seed_from(options.seed, "seed")?, prefix: None, first_index: options.first_index.unwrap_or(0) };
        let innovation = options.innovation_harm(model.is_some(), request.count, spec.length, budget)?;
        Ok(LazyStepRequest { spec, model, algorithm, request, lambda: options.lambda, innovation })
    }

    /// The step on `lazy` with the update rule `rule` (both changed in place).
    fn run(&self, lazy: &mut Lazy, rule: &mut Rule) -> core::Result<RlStep> {
        // Decay would also shrink the rows not stored yet (the base), which are not parameters here.
        if rule.adam.as_ref().is_some_and(|a| a.weight_decay > 0.0) {
            return Err(invalid("a lazy tabular policy trains with Adam or SGD, not with weight decay".into()));
        }
        let (spec, model) = (self.spec.as_ref(), self.model.as_deref());
        let track = Track::new(spec, model);
        let h = match (self.innovation, model) {
            (Some(InnovationHarm::Exact), Some(model)) => Some(conditional_harm(model, &TabularPolicy::new(model, &lazy.dense(model)?)?)),
            _ => None,
        };
        let mut update = |p: &mut [f64], g: &[f64]| {
            if let Some(adam) = rule.adam.as_mut() {
                adam.grow_to(p.len());
            }
            // Lengths agree (grown above), so the update cannot fail.
            let _ = rule.apply(p, g);
        };
        lazy.rl_step(&track, &mut update, &self.request, self.lambda, self.algorithm, harm_source(self.innovation, h.as_deref()).as_ref())
    }
}

pub struct LazyStepTask {
    request: LazyStepRequest,
    /// The copies the step changes, written back when it resolves.
    work: Option<(Lazy, Rule)>,
    policy: Arc<Mutex<Lazy>>,
    optimizer: Arc<Mutex<Rule>>,
    cancel: Option<core::cancel::Cancel>,
}

impl Task for LazyStepTask {
    type Output = crate::Computed<RlStep>;
    type JsValue = RlStepOutput;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        let (lazy, rule) = self.work.as_mut().expect("a task computes once");
        guard_task(self.cancel.as_ref(), || self.request.run(lazy, rule))
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        let step = crate::settle(&env, output)?;
        let (lazy, rule) = self.work.take().expect("a task resolves once");
        *self.policy.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = lazy;
        *self.optimizer.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = rule;
        Ok(step.into())
    }
}
