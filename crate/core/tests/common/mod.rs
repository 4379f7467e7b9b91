//! Test fixtures: the built-in scenarios of THEORY.md in numeric form and seeded random scenarios.
#![allow(dead_code)]

use harm_horizon_core::model::{Model, ScenarioSpec, DEFAULT_MEMORY_BUDGET};

/// refusal: tokens [Sure, Sorry, step, fine, <eos>], T = 16, order 1; context 5 is <bos>.
pub fn refusal_spec() -> ScenarioSpec {
    let e = 1e-4;
    let v = 5;
    let mut base = vec![0.0; 6 * v];
    let rows: [(usize, [f64; 5]); 5] = [
        (5, [0.70, 0.15, 0.02, 0.12, 0.01]),
        (0, [e, e, 1.0 - 4.0 * e, e, e]),
        (2, [e, e, 1.0 - 4.0 * e, e, e]),
        (1, [e, e, e, (1.0 - 3.0 * e) / 2.0, (1.0 - 3.0 * e) / 2.0]),
        (3, [0.02, 0.03, 0.05, 0.60, 0.30]),
    ];
    for (c, row) in rows {
        base[c * v..(c + 1) * v].copy_from_slice(&row);
    }
    // Automaton: count 0..3, HARMFUL = 4 (harm 1), REFUSED = 5.
    let mut transitions = vec![0u32; 6 * v];
    for d in 0..6u32 {
        for a in 0..v {
            transitions[d as usize * v + a] = match (d, a) {
                (0..=3, 2) => d + 1,
                (0..=3, 1) => 5,
                _ => d,
            };
        }
    }
    let mut harm = vec![0.0; 6];
    harm[4] = 1.0;
    ScenarioSpec { vocab: v, length: 16, end_token: Some(4), order: 1, base, transitions, harm, start: 0 }
}

/// horizon: tokens [a, b, c], T = 10, H = 1 iff at least 2 of the first 4 tokens are b.
pub fn horizon_spec() -> ScenarioSpec {
    let v = 3;
    let base = vec![
        0.6, 0.3, 0.1, // a
        0.3, 0.4, 0.3, // b
        0.2, 0.3, 0.5, // c
        0.5, 0.3, 0.2, // <bos>
    ];
    // States 2i + b for i tokens seen (< 4) and b ∈ {0, 1} b's so far; HARM = 8, SAFE = 9.
    let (harm_state, safe_state) = (8u32, 9u32);
    let mut transitions = vec![0u32; 10 * v];
    for d in 0..10u32 {
        for a in 0..v {
            transitions[d as usize * v + a] = if d >= 8 {
                d
            } else {
                let (i, b) = (d / 2, d % 2);
                let b2 = b + (a == 1) as u32;
                if b2 >= 2 {
                    harm_state
                } else if i + 1 == 4 {
                    safe_state
                } else {
                    2 * (i + 1) + b2
                }
            };
        }
    }
    let mut harm = vec![0.0; 10];
    harm[8] = 1.0;
    ScenarioSpec { vocab: v, length: 10, end_token: None, order: 1, base, transitions, harm, start: 0 }
}

/// A small deterministic generator for fixtures (SplitMix64).
pub struct Rng(pub u64);
impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn normal(&mut self) -> f64 {
        let u = self.uniform().max(1e-300);
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * self.uniform()).cos()
    }
}

/// A random scenario: softmax(N(0, σ²)) base rows, random automaton with harm in {0, 1} (or in [0, 1]
/// when `graded`), optional end token (the last token).
pub fn random_spec(seed: u64, vocab: usize, order: usize, length: usize, states: usize, end: bool, graded: bool) -> ScenarioSpec {
    let mut rng = Rng(seed);
    let contexts = (vocab + 1).pow(order as u32);
    let mut base = vec![0.0; contexts * vocab];
    for row in base.chunks_exact_mut(vocab) {
        let logits: Vec<f64> = (0..vocab).map(|_| 1.5 * rng.normal()).collect();
        let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = logits.iter().map(|l| (l - max).exp()).sum();
        for (p, l) in row.iter_mut().zip(&logits) {
            *p = (l - max).exp() / sum;
        }
    }
    let transitions = (0..states * vocab).map(|_| rng.below(states) as u32).collect();
    let mut harm: Vec<f64> = (0..states).map(|_| if graded { rng.uniform() } else { rng.below(2) as f64 }).collect();
    harm[0] = 0.0;
    if states > 1 {
        harm[states - 1] = 1.0;
    }
    ScenarioSpec { vocab, length, end_token: end.then_some(vocab - 1), order, base, transitions, harm, start: 0 }
}

pub fn model(spec: ScenarioSpec) -> Model {
    Model::new(spec, DEFAULT_MEMORY_BUDGET).expect("fixture builds")
}

/// Random logits for a tabular policy over a model.
pub fn random_logits(model: &Model, seed: u64) -> Vec<f64> {
    let mut rng = Rng(seed);
    (0..model.length() * model.num_states() * model.vocab()).map(|_| rng.normal()).collect()
}

pub fn assert_close(a: f64, b: f64, rel: f64, abs: f64, what: &str) {
    assert!(
        (a - b).abs() <= abs.max(rel * a.abs().max(b.abs())),
        "{what}: {a} vs {b} (diff {:e})",
        (a - b).abs()
    );
}

/// A tabular policy without its row cache: sampling and KL take the general per-walk paths, to
/// compare the fast paths over its rows with.
pub struct Uncached<'a>(pub &'a harm_horizon_core::policy::TabularPolicy<'a>);

impl harm_horizon_core::policy::Policy for Uncached<'_> {
    fn probs(&self, t: usize, s: usize, out: &mut [f64]) {
        self.0.probs(t, s, out)
    }
    fn kl_to_base(&self, model: &Model, t: usize, s: usize, scratch: &mut [f64]) -> f64 {
        self.0.kl_to_base(model, t, s, scratch)
    }
}
