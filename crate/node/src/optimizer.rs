//! The Optimizer class: a first-order optimiser with its state (the update rules are the core's).

use std::sync::{Arc, Mutex, MutexGuard};

use crate::core;
use crate::{guard, invalid};
use core::attack::ADAMW_BETA1;
use core::optim::{sgd_step, Adam};
use napi::bindgen_prelude::*;
use napi_derive::napi;

/// Which first-order optimiser.
#[napi(string_enum = "lowercase")]
pub enum OptimizerName {
    Adam,
    /// β1 default 0.5 as Qi et al.'s fine-tuning attack, weight decay default 0.
    Adamw,
    Sgd,
}

/// A first-order optimiser with its state: Adam or plain gradient descent.
#[napi]
pub struct Optimizer {
    /// Shared with a sampled training step running on the pool, which steps a copy and writes it
    /// back when it resolves (an aborted step leaves it unchanged).
    pub(crate) rule: Arc<Mutex<Rule>>,
}

/// The update rule and its state.
#[derive(Clone)]
pub(crate) struct Rule {
    pub(crate) adam: Option<Adam>,
    learning_rate: f64,
}

#[napi]
impl Optimizer {
    /// `size`: number of parameters.
    #[napi(constructor)]
    pub fn new(kind: OptimizerName, size: u32, learning_rate: f64, options: Option<AdamWOptions>) -> napi::Result<Self, String> {
        guard(|| {
            if !(learning_rate.is_finite() && learning_rate > 0.0) {
                return Err(invalid(format!("learningRate must be a positive number, got {learning_rate}")));
            }
            let beta1 = options.as_ref().and_then(|o| o.beta1).unwrap_or(ADAMW_BETA1);
            let weight_decay = options.as_ref().and_then(|o| o.weight_decay).unwrap_or(0.0);
            if !(0.0..1.0).contains(&beta1) {
                return Err(invalid(format!("beta1 must be in [0, 1), got {beta1}")));
            }
            if !(weight_decay.is_finite() && weight_decay >= 0.0) {
                return Err(invalid(format!("weightDecay must be a finite number ≥ 0, got {weight_decay}")));
            }
            let adam = match kind {
                OptimizerName::Adam => Some(Adam::new(size as usize, learning_rate)),
                OptimizerName::Adamw => Some(Adam::adamw(size as usize, learning_rate, beta1, weight_decay)),
                OptimizerName::Sgd => None,
            };
            Ok(Optimizer { rule: Arc::new(Mutex::new(Rule { adam, learning_rate })) })
        })
    }

    #[napi(getter)]
    pub fn learning_rate(&self) -> f64 {
        self.lock().learning_rate
    }

    /// Changes the learning rate (for schedules).
    #[napi(setter)]
    pub fn set_learning_rate(&mut self, value: f64) {
        let mut rule = self.lock();
        rule.learning_rate = value;
        if let Some(adam) = rule.adam.as_mut() {
            adam.learning_rate = value;
        }
    }

    /// One descent step: updates `params` in place along −gradient.
    #[napi]
    pub fn step(&mut self, mut params: Float64Array, gradient: Float64Array) -> napi::Result<(), String> {
        guard(|| {
            if params.len() != gradient.len() {
                return Err(invalid(format!("params ({}) and gradient ({}) differ in length", params.len(), gradient.len())));
            }
            // SAFETY: a synchronous call on the JS thread; nothing else touches the buffer meanwhile.
            self.lock().apply(unsafe { params.as_mut() }, &gradient)
        })
    }
}

impl Optimizer {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Rule> {
        self.rule.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Rule {
    pub(crate) fn apply(&mut self, params: &mut [f64], gradient: &[f64]) -> core::Result<()> {
        match self.adam.as_mut() {
            Some(adam) => {
                if adam.len() != params.len() {
                    return Err(invalid(format!("this optimizer was made for {} parameters, got {}", adam.len(), params.len())));
                }
                adam.step(params, gradient)
            }
            None => sgd_step(params, gradient, self.learning_rate),
        }
        Ok(())
    }
}


/// AdamW's settings (ignored by the other optimisers).
#[napi(object)]
pub struct AdamWOptions {
    pub beta1: Option<f64>,
    pub weight_decay: Option<f64>,
}
