//! Walking a scenario token by token: the state a sampled prefix is in, without enumerating states.
//!
//! A walk carries the tokens so far, the scenario context, the automaton state and, when an exact
//! model is at hand, the exact state index (tabular and Gibbs policies need it; the base and `mlp`
//! policies do not, so those can be sampled on scenarios too large to enumerate).

use crate::model::{Model, ScenarioSpec};

/// Marks positions after the response has ended.
pub const NO_TOKEN: u32 = u32::MAX;
/// Exact state index of a walk when no exact model is used.
pub const NO_STATE: u32 = u32::MAX;

#[derive(Debug, Clone)]
pub struct Walk {
    /// Tokens emitted so far (the walk is at position tokens.len() + 1).
    pub tokens: Vec<u32>,
    pub context: usize,
    pub automaton: usize,
    pub state: u32,
    pub ended: bool,
}

impl Walk {
    pub fn emitted(&self) -> usize {
        self.tokens.len()
    }
    /// Copies another walk into this one without reallocating.
    pub fn copy_from(&mut self, other: &Walk) {
        self.tokens.clear();
        self.tokens.extend_from_slice(&other.tokens);
        self.context = other.context;
        self.automaton = other.automaton;
        self.state = other.state;
        self.ended = other.ended;
    }
}

/// The scenario (and optionally its exact state space) that walks move through.
#[derive(Clone, Copy)]
pub struct Track<'a> {
    pub spec: &'a ScenarioSpec,
    pub model: Option<&'a Model>,
}

impl<'a> Track<'a> {
    pub fn new(spec: &'a ScenarioSpec, model: Option<&'a Model>) -> Self {
        Track { spec, model }
    }

    pub fn start(&self) -> Walk {
        Walk {
            tokens: Vec::with_capacity(self.spec.length),
            context: self.spec.start_context(),
            automaton: self.spec.start,
            state: if self.model.is_some() { 0 } else { NO_STATE },
            ended: false,
        }
    }

    /// True when the walk emits no more tokens (it has ended or reached length T).
    pub fn finished(&self, walk: &Walk) -> bool {
        walk.ended || walk.emitted() >= self.spec.length
    }

    pub fn advance(&self, walk: &mut Walk, token: usize) {
        if let Some(model) = self.model {
            walk.state = model.next_row(walk.state as usize)[token];
        }
        walk.context = self.spec.next_context(walk.context, token);
        walk.automaton = self.spec.transitions[walk.automaton * self.spec.vocab + token] as usize;
        walk.ended = self.spec.end_token == Some(token);
        walk.tokens.push(token as u32);
    }

    pub fn harm(&self, walk: &Walk) -> f64 {
        self.spec.harm[walk.automaton]
    }

    /// Moves a walk back to the start, keeping its buffer.
    pub fn reset(&self, walk: &mut Walk) {
        walk.tokens.clear();
        walk.context = self.spec.start_context();
        walk.automaton = self.spec.start;
        walk.state = if self.model.is_some() { 0 } else { NO_STATE };
        walk.ended = false;
    }

    /// Replays a token sequence (stopping at NO_TOKEN) from the start.
    pub fn replay(&self, tokens: &[u32], walk: &mut Walk) {
        self.reset(walk);
        for &a in tokens.iter().take_while(|&&a| a != NO_TOKEN) {
            self.advance(walk, a as usize);
        }
    }
}
