//! Scenarios in numeric form and their exact state space.
//!
//! A context is the last `order` tokens, "<bos>"-padded, written in base V+1 (digit V = "<bos>",
//! oldest token most significant). An exact state is (context, automaton state); a state has ended
//! when its context's last token is the end token. States are numbered breadth-first from the start
//! state 0, expanding tokens in order, so that every engine (Rust and the TS reference) agrees on
//! state indices. Only states reachable within T tokens exist; ended states and states first reached
//! at depth T are sinks (they emit nothing).

use std::collections::HashMap;

use crate::alloc::{check_reservable, filled, grow};
use crate::error::{Error, Result};

/// Row sums of the base conditionals may be off by at most this much.
pub const ROW_SUM_TOLERANCE: f64 = 1e-9;
/// Default memory budget for the exact engine: 4 GiB.
pub const DEFAULT_MEMORY_BUDGET: u64 = 4 << 30;

/// A scenario in numeric form (validated and named on the TypeScript side).
#[derive(Debug, Clone)]
pub struct ScenarioSpec {
    /// Vocabulary size V.
    pub vocab: usize,
    /// Response length T.
    pub length: usize,
    /// End token id, if any.
    pub end_token: Option<usize>,
    /// Context order n ≥ 1.
    pub order: usize,
    /// Base conditionals: (V+1)^n rows × V.
    pub base: Vec<f64>,
    /// Automaton transitions: D × V.
    pub transitions: Vec<u32>,
    /// Harm per automaton state, in [0, 1].
    pub harm: Vec<f64>,
    /// Automaton start state.
    pub start: usize,
}

impl ScenarioSpec {
    pub fn num_contexts(&self) -> usize {
        (self.vocab + 1).pow(self.order as u32)
    }
    pub fn start_context(&self) -> usize {
        self.num_contexts() - 1
    }
    pub fn next_context(&self, context: usize, token: usize) -> usize {
        (context * (self.vocab + 1) + token) % self.num_contexts()
    }
    pub fn base_row(&self, context: usize) -> &[f64] {
        &self.base[context * self.vocab..(context + 1) * self.vocab]
    }
    fn has_ended(&self, context: usize) -> bool {
        self.end_token == Some(context % (self.vocab + 1))
    }

    /// Checks the shapes and normalises every non-empty row, for Monte Carlo on scenarios too large
    /// to enumerate (rows of unreachable contexts are all zero and stay so; reached rows are
    /// validated on the TypeScript side).
    pub fn prepared(mut self) -> Result<ScenarioSpec> {
        self.check_shapes()?;
        for c in 0..self.num_contexts() {
            if self.base_row(c).iter().any(|&p| p != 0.0) {
                self.check_and_normalise_row(c)?;
            }
        }
        Ok(self)
    }

    /// Shape checks that do not depend on reachability.
    fn check_shapes(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidSpec(m));
        if self.vocab == 0 {
            return bad("vocab must be at least 1".into());
        }
        if self.length == 0 {
            return bad("length must be at least 1".into());
        }
        if self.order == 0 {
            return bad("order must be at least 1".into());
        }
        let contexts = (self.vocab as u128 + 1).checked_pow(self.order as u32);
        match contexts {
            Some(c) if c * (self.vocab as u128) == self.base.len() as u128 => {}
            _ => {
                return bad(format!(
                    "base has {} entries, expected (V+1)^order × V with V = {}, order = {}",
                    self.base.len(),
                    self.vocab,
                    self.order
                ))
            }
        }
        if let Some(e) = self.end_token {
            if e >= self.vocab {
                return bad(format!("end token {e} is not below V = {}", self.vocab));
            }
        }
        let states = self.harm.len();
        if states == 0 {
            return bad("the harm automaton needs at least one state".into());
        }
        if self.transitions.len() != states * self.vocab {
            return bad(format!(
                "transitions has {} entries, expected D × V = {} × {}",
                self.transitions.len(),
                states,
                self.vocab
            ));
        }
        if let Some(i) = self.transitions.iter().position(|&d| d as usize >= states) {
            return bad(format!("transitions[{i}] = {} is not an automaton state", self.transitions[i]));
        }
        if let Some(i) = self.harm.iter().position(|h| !(0.0..=1.0).contains(h)) {
            return bad(format!("harm[{i}] = {} is outside [0, 1]", self.harm[i]));
        }
        if self.start >= states {
            return bad(format!("start state {} is not an automaton state", self.start));
        }
        Ok(())
    }

    /// Checks a reached row and rescales it to sum to 1 exactly (up to rounding), so that
    /// quantities that vanish in exact arithmetic (KL beyond the horizon) vanish here too.
    fn check_and_normalise_row(&mut self, context: usize) -> Result<()> {
        let v = self.vocab;
        let row = &mut self.base[context * v..(context + 1) * v];
        if let Some(a) = row.iter().position(|p| !p.is_finite() || *p < 0.0) {
            return Err(Error::InvalidSpec(format!(
                "base row of context {context} has entry {a} = {}, not a probability",
                row[a]
            )));
        }
        let sum: f64 = row.iter().sum();
        if (sum - 1.0).abs() > ROW_SUM_TOLERANCE {
            return Err(Error::InvalidSpec(format!(
                "base row of context {context} sums to {sum}, not 1 within {ROW_SUM_TOLERANCE:e}"
            )));
        }
        row.iter_mut().for_each(|p| *p /= sum);
        Ok(())
    }
}

/// The exact state space of a scenario: reachable (context, automaton state) pairs.
#[derive(Debug)]
pub struct Model {
    pub spec: ScenarioSpec,
    /// Context per state.
    pub context: Vec<u32>,
    /// Automaton state per state.
    pub automaton: Vec<u32>,
    /// Whether the state emits tokens (expanded and not ended); other states are sinks.
    pub live: Vec<bool>,
    /// next[s·V + a]: the state after emitting a at live state s (s itself at sinks).
    pub next: Vec<u32>,
    /// Incoming edges of each state as flat edge ids s·V + a, in increasing order (CSR).
    pub incoming_start: Vec<u32>,
    pub incoming: Vec<u32>,
}

/// Bytes the exact engine needs per state, counting what is really built: the breadth-first build
/// (hash index entry with its control byte and resize copy, depth, context, automaton, live flag,
/// each with a vector's doubling headroom), the successor table with its headroom, the incoming-edge
/// arrays, one flow row, three (T+1)-tables of f64 and, when `policy_tables` is set, one T × V table
/// of f64 (tabular logits, the base as logits or a logit gradient).
pub fn bytes_per_state(length: usize, vocab: usize, policy_tables: bool) -> u64 {
    let build = 2 * (8 + 4 + 1) + 2 * (8 + 4 + 4 + 1);
    let graph = vocab as u64 * (2 * 4 + 4) + 4;
    build + graph + table_bytes_per_state(length, vocab, policy_tables)
}

/// The part of `bytes_per_state` allocated after the build: one flow row, three (T+1)-tables and
/// the optional T × V policy table.
fn table_bytes_per_state(length: usize, vocab: usize, policy_tables: bool) -> u64 {
    let (t, v) = (length as u64, vocab as u64);
    let policy = if policy_tables { t * v * 8 } else { 0 };
    v * 8 + 3 * (t + 1) * 8 + policy
}

impl Model {
    /// Builds the reachable state space, refusing it when it would not fit in `memory_budget` bytes.
    pub fn new(spec: ScenarioSpec, memory_budget: u64) -> Result<Model> {
        Model::with_budget(spec, memory_budget, false)
    }

    /// `new`, counting one T × S × V table of f64 in the budget when `policy_tables` is set (the
    /// sampler's view of the base or of a tabular policy, and gradients, build one).
    pub fn with_budget(mut spec: ScenarioSpec, memory_budget: u64, policy_tables: bool) -> Result<Model> {
        spec.check_shapes()?;
        let v = spec.vocab;
        let per_state = bytes_per_state(spec.length, v, policy_tables);
        let max_states = (memory_budget / per_state).min((u32::MAX as u64 - 1) / v as u64) as usize;

        let d_count = spec.harm.len() as u64;
        let mut index: HashMap<u64, u32> = HashMap::new();
        let mut context = vec![spec.start_context() as u32];
        let mut automaton = vec![spec.start as u32];
        let mut depth = vec![0usize];
        index.insert(spec.start_context() as u64 * d_count + spec.start as u64, 0);

        let mut live = Vec::new();
        let mut next: Vec<u32> = Vec::new();
        let mut checked_rows = filled(spec.num_contexts(), false, "checked-row flags")?;
        // Whenever the state count doubles, the tables that follow the build must still be
        // allocatable for the states found so far: a budget larger than the machine fails early.
        let mut probe_at = 1 << 16;
        let table_bytes = table_bytes_per_state(spec.length, v, policy_tables) as usize;
        let mut s = 0;
        while s < context.len() {
            if context.len() >= probe_at {
                check_reservable::<u8>(&[context.len(), table_bytes], "exact engine's tables")?;
                probe_at *= 2;
            }
            let c = context[s] as usize;
            let d = automaton[s] as usize;
            let expand = depth[s] < spec.length && !spec.has_ended(c);
            grow(&mut live, 1, "exact state space")?;
            live.push(expand);
            if !expand {
                grow(&mut next, v, "exact state space")?;
                next.extend(std::iter::repeat(s as u32).take(v));
            } else {
                // Room for this state's V successors, reserved fallibly (the budget may exceed the machine).
                let what = "exact state space";
                grow(&mut next, v, what)?;
                grow(&mut context, v, what)?;
                grow(&mut automaton, v, what)?;
                grow(&mut depth, v, what)?;
                index.try_reserve(v).map_err(|_| Error::OutOfMemory { what: what.into(), bytes: (index.len() * 16) as f64 })?;
                if !checked_rows[c] {
                    spec.check_and_normalise_row(c)?;
                    checked_rows[c] = true;
                }
                for a in 0..v {
                    let c2 = spec.next_context(c, a);
                    let d2 = spec.transitions[d * v + a] as usize;
                    let key = c2 as u64 * d_count + d2 as u64;
                    let id = *index.entry(key).or_insert_with(|| {
                        context.push(c2 as u32);
                        automaton.push(d2 as u32);
                        depth.push(depth[s] + 1);
                        (context.len() - 1) as u32
                    });
                    next.push(id);
                }
                if context.len() > max_states {
                    return Err(Error::StateSpaceTooLarge {
                        states: max_states,
                        bytes: context.len() as u64 * per_state,
                        budget: memory_budget,
                    });
                }
            }
            s += 1;
        }

        let n = context.len();
        check_reservable::<u8>(&[n, table_bytes], "exact engine's tables")?;
        let (incoming_start, incoming) = incoming_edges(&live, &next, n, v)?;
        Ok(Model { spec, context, automaton, live, next, incoming_start, incoming })
    }

    pub fn num_states(&self) -> usize {
        self.context.len()
    }
    pub fn vocab(&self) -> usize {
        self.spec.vocab
    }
    pub fn length(&self) -> usize {
        self.spec.length
    }
    /// Harm of the response that ends in state s.
    pub fn harm(&self, s: usize) -> f64 {
        self.spec.harm[self.automaton[s] as usize]
    }
    pub fn base_row(&self, s: usize) -> &[f64] {
        self.spec.base_row(self.context[s] as usize)
    }
    pub fn next_row(&self, s: usize) -> &[u32] {
        let v = self.spec.vocab;
        &self.next[s * v..(s + 1) * v]
    }
    /// Incoming edge ids (s·V + a) of state s.
    pub fn incoming_of(&self, s: usize) -> &[u32] {
        &self.incoming[self.incoming_start[s] as usize..self.incoming_start[s + 1] as usize]
    }
}

/// Counting sort of the live edges by their target: a gather layout for the forward pass.
fn incoming_edges(live: &[bool], next: &[u32], n: usize, v: usize) -> Result<(Vec<u32>, Vec<u32>)> {
    let mut start = filled(n + 1, 0u32, "incoming-edge offsets")?;
    for s in (0..n).filter(|&s| live[s]) {
        for &t in &next[s * v..(s + 1) * v] {
            start[t as usize + 1] += 1;
        }
    }
    for i in 0..n {
        start[i + 1] += start[i];
    }
    let mut fill = filled(n + 1, 0u32, "incoming-edge offsets")?;
    fill.copy_from_slice(&start);
    let mut edges = filled(start[n] as usize, 0u32, "incoming edges")?;
    for s in (0..n).filter(|&s| live[s]) {
        for a in 0..v {
            let t = next[s * v + a] as usize;
            edges[fill[t] as usize] = (s * v + a) as u32;
            fill[t] += 1;
        }
    }
    Ok((start, edges))
}
