//! First-order optimisers over flat parameter vectors.

/// Adam (Kingma & Ba) with bias correction.
#[derive(Debug, Clone)]
pub struct Adam {
    pub learning_rate: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    m: Vec<f64>,
    v: Vec<f64>,
    steps: i32,
}

impl Adam {
    pub fn new(len: usize, learning_rate: f64) -> Adam {
        Adam { learning_rate, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, m: vec![0.0; len], v: vec![0.0; len], steps: 0 }
    }

    /// Number of parameters it was made for.
    pub fn len(&self) -> usize {
        self.m.len()
    }

    pub fn is_empty(&self) -> bool {
        self.m.is_empty()
    }

    /// One descent step along `grad` (the gradient of the objective being minimised).
    pub fn step(&mut self, params: &mut [f64], grad: &[f64]) {
        self.steps += 1;
        let c1 = 1.0 - self.beta1.powi(self.steps);
        let c2 = 1.0 - self.beta2.powi(self.steps);
        for i in 0..params.len() {
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
