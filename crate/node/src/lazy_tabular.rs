//! The LazyTabular class: a lazily keyed tabular policy (rows per visited (position, context,
//! automaton state), the base elsewhere) kept in the core between sampled training steps, and its
//! stored rows as plain arrays (`SparseRows`), the form policies take in `PolicyInput`.

use crate::core;
use crate::monte_carlo::MonteCarlo;
use crate::optimizer::Optimizer;
use crate::training_types::{harm_source, InnovationHarm, RlOptions, RlStepOutput};
use crate::{count_from, guard, invalid, seed_from, ScenarioInput};
use core::exact::conditional_harm;
use core::lazy_tabular::{LazyTabular as Lazy, RowKey};
use core::model::{ScenarioSpec, DEFAULT_MEMORY_BUDGET};
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
    inner: Lazy,
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
            Ok(LazyTabular { inner })
        })
    }

    /// Number of rows stored: the (position, context, automaton state) keys visited so far.
    #[napi(getter)]
    pub fn num_rows(&self) -> u32 {
        self.inner.num_rows() as u32
    }

    /// The stored rows, in key order.
    #[napi]
    pub fn rows(&self) -> SparseRows {
        let (keys, logits) = self.inner.rows();
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
    pub fn rl_step(&mut self, mc: &MonteCarlo, optimizer: &Optimizer, options: RlOptions) -> napi::Result<RlStepOutput, String> {
        guard(|| {
            let algorithm = options.checked_algorithm()?;
            if options.penalty.is_some() {
                return Err(invalid("a sampled recovery penalty is for transformer policies only".into()));
            }
            // Decay would also shrink the rows not stored yet (the base), which are not parameters here.
            let mut rule = optimizer.lock();
            if rule.adam.as_ref().is_some_and(|a| a.weight_decay > 0.0) {
                return Err(invalid("a lazy tabular policy trains with Adam or SGD, not with weight decay".into()));
            }
            let (spec, model) = mc.shared();
            let (spec, model) = (spec.as_ref(), model.as_deref());
            let track = Track::new(spec, model);
            let request = SampleRequest { count: count_from(options.samples, "samples")?, seed: seed_from(options.seed, "seed")?, prefix: None, first_index: options.first_index.unwrap_or(0) };
            let innovation = options.innovation_harm(model.is_some(), request.count, spec.length, self.inner.budget())?;
            let h = match (innovation, model) {
                (Some(InnovationHarm::Exact), Some(model)) => Some(conditional_harm(model, &TabularPolicy::new(model, &self.inner.dense(model)?)?)),
                _ => None,
            };
            let mut update = |p: &mut [f64], g: &[f64]| {
                if let Some(adam) = rule.adam.as_mut() {
                    adam.grow_to(p.len());
                }
                // Lengths agree (grown above), so the update cannot fail.
                let _ = rule.apply(p, g);
            };
            let step = self.inner.rl_step(&track, &mut update, &request, options.lambda, algorithm, harm_source(innovation, h.as_deref()).as_ref())?;
            Ok(RlStepOutput { mean_harm: step.mean_harm, mean_kl: step.mean_kl, objective: step.objective, grad_norm: Float64Array::new(step.grad_norm) })
        })
    }
}
