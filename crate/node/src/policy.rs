//! Policies from JavaScript: `base`, `tabular` (logits T × S × V), `gibbs` (λ), `mlp` and
//! `transformer` (network shape and parameters), for the exact engine and for sampling.

use std::borrow::Cow;

use crate::core;
use crate::invalid;
use crate::lazy_tabular::{lazy_from_rows, SparseRows};
use core::mlp::{Activation, MlpConfig};
use core::model::ScenarioSpec;
use core::policy_spec::PolicySpec;
use core::transformer::TransformerConfig;
use napi::bindgen_prelude::*;
use napi_derive::napi;

/// The activation of an mlp's hidden layers.
#[napi(string_enum = "lowercase")]
#[derive(Clone, Copy)]
pub enum ActivationName {
    Tanh,
    Relu,
}

/// The shape of an `mlp` policy (its vocabulary and length are the scenario's).
#[napi(object)]
#[derive(Clone)]
pub struct MlpShape {
    /// Number of previous tokens it reads (≥ 1).
    pub order: u32,
    /// Widths of the hidden layers (one or two).
    pub hidden: Vec<u32>,
    pub activation: ActivationName,
}

impl MlpShape {
    pub fn config(&self, vocab: usize, length: usize) -> MlpConfig {
        let activation = match self.activation {
            ActivationName::Tanh => Activation::Tanh,
            ActivationName::Relu => Activation::Relu,
        };
        MlpConfig { vocab, order: self.order as usize, length, hidden: self.hidden.iter().map(|&h| h as usize).collect(), activation }
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
    pub fn config(&self, vocab: usize, length: usize) -> TransformerConfig {
        TransformerConfig { vocab, length, layers: self.layers as usize, width: self.width as usize, heads: self.heads as usize, mlp_width: self.mlp_width as usize }
    }
}

/// Which policy a `PolicyInput` describes.
#[napi(string_enum = "kebab-case")]
pub enum PolicyKind {
    Base,
    Tabular,
    Gibbs,
    Mlp,
    Transformer,
    LazyTabular,
}

/// Which policy: `base`, `tabular` (with `logits`, T×S×V), `gibbs` (with `lambda`), `mlp` (with
/// `mlp` and `params`), `transformer` (with `transformer` and `params`) or `lazy-tabular` (with `rows`).
#[napi(object)]
pub struct PolicyInput {
    pub kind: PolicyKind,
    pub logits: Option<Float64Array>,
    pub lambda: Option<f64>,
    pub mlp: Option<MlpShape>,
    pub params: Option<Float64Array>,
    pub transformer: Option<TransformerLayout>,
    pub rows: Option<SparseRows>,
}

/// Reads a policy; `spec` gives the networks their vocabulary and length.
pub fn policy_spec<'a>(input: &'a PolicyInput, spec: &ScenarioSpec) -> core::Result<PolicySpec<'a>> {
    match input.kind {
        PolicyKind::Base => Ok(PolicySpec::Base),
        PolicyKind::Tabular => match &input.logits {
            Some(l) => Ok(PolicySpec::Tabular(Cow::Borrowed(l.as_ref()))),
            None => Err(invalid("policy.logits is required for a tabular policy".into())),
        },
        PolicyKind::Gibbs => match input.lambda {
            Some(l) => Ok(PolicySpec::Gibbs(l)),
            None => Err(invalid("policy.lambda is required for the gibbs policy".into())),
        },
        PolicyKind::Mlp => match (&input.mlp, &input.params) {
            (Some(shape), Some(params)) => PolicySpec::mlp(shape.config(spec.vocab, spec.length), Cow::Borrowed(params.as_ref())),
            _ => Err(invalid("policy.mlp and policy.params are required for an mlp policy".into())),
        },
        PolicyKind::Transformer => match (&input.transformer, &input.params) {
            (Some(layout), Some(params)) => PolicySpec::transformer(layout.config(spec.vocab, spec.length), Cow::Borrowed(params.as_ref())),
            _ => Err(invalid("policy.transformer and policy.params are required for a transformer policy".into())),
        },
        // The rows are already in memory (JS arrays): copying them needs no budget of its own.
        PolicyKind::LazyTabular => match &input.rows {
            Some(rows) => Ok(PolicySpec::LazyTabular(std::sync::Arc::new(lazy_from_rows(rows, spec, u64::MAX)?))),
            None => Err(invalid("policy.rows is required for a lazy-tabular policy".into())),
        },
    }
}
