//! First-order optimisers over flat parameter vectors.

/// Adam (Kingma & Ba) with bias correction, and AdamW (Loshchilov & Hutter) when `weight_decay` > 0:
/// each step first shrinks the parameters by lr·weight_decay, decoupled from the gradient (PyTorch's order).
#[derive(Debug, Clone)]
pub struct Adam {
    pub learning_rate: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    pub weight_decay: f64,
    m: Vec<f64>,
    v: Vec<f64>,
    steps: i32,
}

impl Adam {
    pub fn new(len: usize, learning_rate: f64) -> Adam {
        Adam { learning_rate, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weight_decay: 0.0, m: vec![0.0; len], v: vec![0.0; len], steps: 0 }
    }

    /// AdamW with first-moment decay β1 and decoupled weight decay (β2 = 0.999, ε = 1e-8).
    pub fn adamw(len: usize, learning_rate: f64, beta1: f64, weight_decay: f64) -> Adam {
        Adam { beta1, weight_decay, ..Adam::new(len, learning_rate) }
    }

    /// Number of parameters it was made for.
    pub fn len(&self) -> usize {
        self.m.len()
    }

    pub fn is_empty(&self) -> bool {
        self.m.is_empty()
    }

    /// Extends the state to `len` parameters, the new ones with zero moments: what they would hold
    /// had their gradient been 0 so far (a lazily keyed policy's newly visited rows).
    pub fn grow_to(&mut self, len: usize) {
        if len > self.m.len() {
            self.m.resize(len, 0.0);
            self.v.resize(len, 0.0);
        }
    }

    /// One descent step along `grad` (the gradient of the objective being minimised).
    pub fn step(&mut self, params: &mut [f64], grad: &[f64]) {
        self.steps += 1;
        let c1 = 1.0 - self.beta1.powi(self.steps);
        let c2 = 1.0 - self.beta2.powi(self.steps);
        for i in 0..params.len() {
            // As a product (PyTorch's p·(1 − lr·wd)), so −∞ logits stay −∞ rather than turning NaN.
            params[i] *= 1.0 - self.learning_rate * self.weight_decay;
            self.m[i] = self.beta1 * self.m[i] + (1.0 - self.beta1) * grad[i];
            self.v[i] = self.beta2 * self.v[i] + (1.0 - self.beta2) * grad[i] * grad[i];
            params[i] -= self.learning_rate * (self.m[i] / c1) / ((self.v[i] / c2).sqrt() + self.epsilon);
        }
    }
}

/// Plain gradient descent.
pub fn sgd_step(params: &mut [f64], grad: &[f64], learning_rate: f64) {
    params.iter_mut().zip(grad).for_each(|(p, g)| *p -= learning_rate * g);
}

#[cfg(test)]
mod tests {
    use super::Adam;

    /// Two AdamW steps against values worked out by hand (β1 = 0.5, β2 = 0.999, ε = 1e-8, lr = 0.1,
    /// weight decay 0.01): step 1 shrinks p by lr·wd, then m̂ = g and v̂ = g², so p moves by lr·g/(|g| + ε).
    #[test]
    fn adamw_takes_the_hand_computed_steps() {
        let mut p = [1.0, -2.0];
        let mut opt = Adam::adamw(2, 0.1, 0.5, 0.01);
        opt.step(&mut p, &[0.5, -0.1]);
        // 1 − 0.001 − 0.1·0.5/(0.5 + 1e-8) and −2 + 0.002 + 0.1·0.1/(0.1 + 1e-8).
        assert!((p[0] - 0.899000002).abs() < 1e-14, "{}", p[0]);
        assert!((p[1] - -1.89800001).abs() < 1e-14, "{}", p[1]);
        opt.step(&mut p, &[0.2, 0.3]);
        // m = 0.225, v = 2.8975e-4 → m̂ = 0.3, v̂ = 2.8975e-4/1.999e-3, and likewise for p[1].
        assert!((p[0] - 0.8193028707436447).abs() < 1e-14, "{}", p[0]);
        assert!((p[1] - -1.9706226958059723).abs() < 1e-14, "{}", p[1]);
    }

    /// A token the policy never emits (logit −∞, gradient 0) stays at −∞, with or without decay.
    #[test]
    fn impossible_tokens_stay_impossible() {
        for decay in [0.0, 0.01] {
            let mut p = [f64::NEG_INFINITY, 0.5];
            let mut opt = Adam::adamw(2, 0.1, 0.5, decay);
            opt.step(&mut p, &[0.0, 0.2]);
            assert_eq!(p[0], f64::NEG_INFINITY);
            assert!(p[1].is_finite());
        }
    }
}
