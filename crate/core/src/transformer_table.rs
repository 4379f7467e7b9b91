//! Transformer policies on the exact engine and in training: the prefix tree, tabulation, the
//! pull-back of logit gradients, fitting the base, and the family for sampled policy gradients.
//!
//! A transformer reads the whole prefix, so the scenario's exact states (context, automaton state)
//! are too coarse for it. The prefix tree has one state per prefix (the Model type, with a state's
//! context and automaton state kept for the base rows and the harm), so the exact engine analyses
//! a transformer through its rows at every prefix: a tabular policy on the tree. Rows come from
//! batched forward passes over the tree's leaves: the pass over a leaf's prefix gives the rows of
//! all its ancestors at once (causal attention), and each state takes its row from one leaf.

use crate::error::{Error, Result};
use crate::model::{bytes_per_state, Model, ScenarioSpec};
use crate::optim::Adam;
use crate::parallel::map_chunks_of;
use crate::estimate::{harm_paths, HarmPaths, HarmSource};
use crate::rl::{ScoreCoefficient, Trainable};
use crate::sampling::{sample, BaseStep, SampleRequest, Samples};
use crate::transformer::{Transformer, TransformerPolicy, BATCH_SEQUENCES};
use crate::vector_math::softmax_in_place;
use crate::walk::{Track, NO_TOKEN};

/// Leaves whose forward (and backward) passes one task runs, in batches; tasks are combined in order.
const LEAVES_PER_TASK: usize = 256;

/// The prefix tree of a scenario: one state per prefix of at most T tokens (a prefix that holds the
/// end token stops there). States are numbered breadth-first, children in token order, as in
/// `Model::new`. The memory budget counts the engine's tables and the tabulated logits.
pub fn prefix_tree(spec: ScenarioSpec, memory_budget: u64) -> Result<Model> {
    let spec = spec.prepared()?;
    let (v, t_max) = (spec.vocab, spec.length);
    let per_state = bytes_per_state(t_max, v, true);
    let max_states = (memory_budget / per_state).min((u32::MAX as u64 - 1) / v as u64) as usize;
    // Count first: 1 + Σ_{d<T} V·(live prefixes of length d), a live prefix being one without the end token.
    let continuing = (v - usize::from(spec.end_token.is_some())) as u128;
    let (mut states, mut live_at_depth) = (1u128, 1u128);
    for _ in 0..t_max {
        states = states.saturating_add(live_at_depth.saturating_mul(v as u128));
        live_at_depth = live_at_depth.saturating_mul(continuing);
    }
    if states > max_states as u128 {
        let bytes = u64::try_from(states.saturating_mul(per_state as u128)).unwrap_or(u64::MAX);
        return Err(Error::StateSpaceTooLarge { states: max_states, bytes, budget: memory_budget });
    }
    let (mut context, mut automaton, mut depth, mut ended) = (vec![spec.start_context() as u32], vec![spec.start as u32], vec![0usize], vec![false]);
    let (mut live, mut next) = (Vec::new(), Vec::new());
    let mut s = 0;
    while s < context.len() {
        let expand = depth[s] < t_max && !ended[s];
        live.push(expand);
        if !expand {
            next.extend(std::iter::repeat_n(s as u32, v));
        } else {
            for a in 0..v {
                next.push(context.len() as u32);
                context.push(spec.next_context(context[s] as usize, a) as u32);
                automaton.push(spec.transitions[automaton[s] as usize * v + a]);
                depth.push(depth[s] + 1);
                ended.push(spec.end_token == Some(a));
            }
        }
        s += 1;
    }
    // One incoming edge per state but the root, in state order.
    let n = context.len();
    let incoming_start = (0..=n as u32).map(|s| s.saturating_sub(1)).collect();
    let mut incoming = vec![0u32; n - 1];
    for s in (0..n).filter(|&s| live[s]) {
        for a in 0..v {
            incoming[next[s * v + a] as usize - 1] = (s * v + a) as u32;
        }
    }
    Ok(Model { spec, context, automaton, live, next, incoming_start, incoming })
}

/// A prefix tree's layout for batched passes: the leaves' token sequences and, per leaf, the
/// states whose rows its pass provides (position i of the pass = the state after i tokens).
struct Leaves {
    /// Leaves × T tokens, NO_TOKEN after the prefix.
    tokens: Vec<u32>,
    /// (position, state) pairs, grouped by leaf: leaf l owns rows[start[l]..start[l + 1]].
    rows: Vec<(u32, u32)>,
    start: Vec<usize>,
}

impl Leaves {
    fn count(&self) -> usize {
        self.start.len() - 1
    }

    /// Checks that `model` is a prefix tree and lays out its leaves. A live state with no live child
    /// is a leaf; going up from a leaf, a state is owned by the leaf while it is its parent's first
    /// live child (so each live state is owned by exactly one leaf).
    fn of(model: &Model) -> Result<Leaves> {
        let (n, v, t_max) = (model.num_states(), model.vocab(), model.length());
        let not_tree = || Error::InvalidArgument("a transformer is analysed exactly on the prefix-tree state space (one state per prefix): build the exact engine with prefixTree".into());
        if !model.incoming_of(0).is_empty() || (1..n).any(|s| model.incoming_of(s).len() != 1) {
            return Err(not_tree());
        }
        let parent = |s: usize| model.incoming_of(s)[0] as usize / v;
        let mut depth = vec![0usize; n];
        for s in 1..n {
            // Breadth-first numbering puts parents first.
            if parent(s) >= s {
                return Err(not_tree());
            }
            depth[s] = depth[parent(s)] + 1;
        }
        let mut first_live_child = vec![u32::MAX; n];
        let mut has_live_child = vec![false; n];
        for s in (1..n).rev().filter(|&s| model.live[s]) {
            first_live_child[parent(s)] = s as u32;
            has_live_child[parent(s)] = true;
        }
        let (mut tokens, mut rows, mut start) = (Vec::new(), Vec::new(), vec![0]);
        let mut path = Vec::with_capacity(t_max);
        for leaf in (0..n).filter(|&s| model.live[s] && !has_live_child[s]) {
            path.clear();
            let mut s = leaf;
            loop {
                rows.push((depth[s] as u32, s as u32));
                if s == 0 || first_live_child[parent(s)] != s as u32 {
                    break;
                }
                s = parent(s);
            }
            let mut s = leaf;
            while s != 0 {
                path.push((model.incoming_of(s)[0] as usize % v) as u32);
                s = parent(s);
            }
            tokens.extend(path.iter().rev());
            tokens.extend(std::iter::repeat_n(NO_TOKEN, t_max - path.len()));
            start.push(rows.len());
        }
        Ok(Leaves { tokens, rows, start })
    }
}

fn check_fit(net: &Transformer, params: &[f64], model: &Model) -> Result<()> {
    let c = &net.config;
    if c.vocab != model.vocab() || c.length != model.length() {
        return Err(Error::InvalidArgument(format!("a transformer over V = {}, T = {} for a scenario with V = {}, T = {}", c.vocab, c.length, model.vocab(), model.length())));
    }
    net.check_params(params)
}

/// The transformer's logits at every live state of a prefix tree: a tabular policy, T × S × V (a
/// state's row repeated at every position; rows of sinks are 0).
pub fn tabulate(net: &Transformer, params: &[f64], model: &Model) -> Result<Vec<f64>> {
    check_fit(net, params, model)?;
    let leaves = Leaves::of(model)?;
    let (n, v, t_max) = (model.num_states(), model.vocab(), model.length());
    let parts = map_chunks_of(leaves.count(), BATCH_SEQUENCES, |range| {
        let mut work = net.work(range.len());
        net.forward_batch(params, &leaves.tokens[range.start * t_max..range.end * t_max], &mut work);
        let mut out = Vec::with_capacity((leaves.start[range.end] - leaves.start[range.start]) * v);
        for leaf in range.clone() {
            for &(i, _) in &leaves.rows[leaves.start[leaf]..leaves.start[leaf + 1]] {
                let row = ((leaf - range.start) * t_max + i as usize) * v;
                out.extend_from_slice(&work.logits[row..row + v]);
            }
        }
        out
    });
    let mut table = vec![0.0; t_max * n * v];
    for ((_, s), row) in leaves.rows.iter().zip(parts.concat().chunks_exact(v)) {
        for t in 0..t_max {
            table[(t * n + *s as usize) * v..][..v].copy_from_slice(row);
        }
    }
    Ok(table)
}

/// Pulls a gradient with respect to the tabulated logits (T × S × V) back to the parameters:
/// Σ_s J_sᵀ Σ_t g_t(s), J_s the Jacobian of state s's row (one backward pass per batch of leaves).
pub fn pull_back(net: &Transformer, params: &[f64], model: &Model, logit_grad: &[f64]) -> Result<Vec<f64>> {
    check_fit(net, params, model)?;
    let (n, v, t_max, p) = (model.num_states(), model.vocab(), model.length(), net.num_params());
    if logit_grad.len() != t_max * n * v {
        return Err(Error::InvalidArgument(format!("logit gradient has {} entries, expected T × S × V = {}", logit_grad.len(), t_max * n * v)));
    }
    let leaves = Leaves::of(model)?;
    let mut per_state = vec![0.0; n * v];
    for layer in logit_grad.chunks_exact(n * v) {
        crate::mlp::axpy(1.0, layer, &mut per_state);
    }
    let parts = map_chunks_of(leaves.count(), LEAVES_PER_TASK, |range| {
        let mut grad = vec![0.0; p];
        let mut work = net.work(BATCH_SEQUENCES);
        let mut delta = vec![0.0; BATCH_SEQUENCES * t_max * v];
        for first in range.clone().step_by(BATCH_SEQUENCES) {
            let last = (first + BATCH_SEQUENCES).min(range.end);
            let responses = &leaves.tokens[first * t_max..last * t_max];
            net.forward_batch(params, responses, &mut work);
            delta.fill(0.0);
            for leaf in first..last {
                for &(i, s) in &leaves.rows[leaves.start[leaf]..leaves.start[leaf + 1]] {
                    let row = ((leaf - first) * t_max + i as usize) * v;
                    delta[row..row + v].copy_from_slice(&per_state[s as usize * v..][..v]);
                }
            }
            net.backward_batch(params, responses, &mut work, &delta, &mut grad);
        }
        grad
    });
    let mut total = vec![0.0; p];
    for part in &parts {
        crate::mlp::axpy(1.0, part, &mut total);
    }
    Ok(total)
}

/// Settings of `fit_base`.
#[derive(Debug, Clone, Copy)]
pub struct FitOptions {
    pub steps: usize,
    /// Base responses per step (fresh ones each step).
    pub batch: usize,
    /// Adam's learning rate, cosine-decayed to 0 over the steps.
    pub learning_rate: f64,
    pub seed: u64,
}

/// Fits the transformer to the base by teacher forcing: Adam on the cross-entropy of base samples,
/// −(1/N) Σ_n Σ_t log π_θ(y_{n,t} | y_{n,<t}), whose expectation is KL(P_base ‖ P_θ) + const.
pub fn fit_base(net: &Transformer, params: &mut [f64], spec: &ScenarioSpec, options: FitOptions) -> Result<()> {
    net.check_params(params)?;
    if options.batch < 1 || !(options.learning_rate.is_finite() && options.learning_rate > 0.0) {
        return Err(Error::InvalidArgument("fitting the base needs a batch ≥ 1 and a learning rate > 0".into()));
    }
    let track = Track::new(spec, None);
    let mut adam = Adam::new(params.len(), options.learning_rate);
    for step in 0..options.steps {
        adam.learning_rate = 0.5 * options.learning_rate * (1.0 + (std::f64::consts::PI * step as f64 / options.steps as f64).cos());
        let first_index = u32::try_from(step * options.batch).map_err(|_| Error::InvalidArgument("too many fitting samples".into()))?;
        let request = SampleRequest { count: options.batch, seed: options.seed, prefix: None, first_index };
        let samples = sample(&track, &BaseStep { spec }, &request)?;
        let grad = net.score_gradient(params, &samples, &|_, _, _| -1.0);
        adam.step(params, &grad);
    }
    Ok(())
}

/// KL(P_base ‖ P_θ) over whole responses estimated on `count` base responses: the mean of
/// Σ_t log p(y_t | y_<t) − log π_θ(y_t | y_<t), and its standard error.
pub fn sampled_kl_from_base(net: &Transformer, params: &[f64], spec: &ScenarioSpec, count: usize, seed: u64, first_index: u32) -> Result<(f64, f64)> {
    net.check_params(params)?;
    if count < 2 {
        return Err(Error::InvalidArgument("the KL estimate needs at least 2 responses".into()));
    }
    let track = Track::new(spec, None);
    let samples = sample(&track, &BaseStep { spec }, &SampleRequest { count, seed, prefix: None, first_index })?;
    let log_ratio = sequence_log_ratios(net, params, &samples);
    let mean = log_ratio.iter().sum::<f64>() / count as f64;
    let var = log_ratio.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (count - 1) as f64;
    Ok((mean, (var / count as f64).sqrt()))
}

/// Per response: Σ_t (sampled log-probability − log π_θ(y_t | y_<t)).
fn sequence_log_ratios(net: &Transformer, params: &[f64], samples: &Samples) -> Vec<f64> {
    let (t_max, v) = (samples.length, net.config.vocab);
    let logits = net.logits(params, &samples.tokens);
    let mut row = vec![0.0; v];
    (0..samples.count)
        .map(|n| {
            (0..t_max)
                .filter(|&i| samples.tokens[n * t_max + i] != NO_TOKEN)
                .map(|i| {
                    row.copy_from_slice(&logits[(n * t_max + i) * v..][..v]);
                    softmax_in_place(&mut row);
                    samples.log_probs[n * t_max + i] - row[samples.tokens[n * t_max + i] as usize].ln()
                })
                .sum()
        })
        .collect()
}

/// The deep objective's recovery penalty on sampled harmful responses (Q): N responses (N × T,
/// NO_TOKEN after the end) with weights (their harm), μ, w_t and the recovery mask R.
pub struct RecoveryPenalty<'a> {
    pub responses: &'a [u32],
    pub weights: &'a [f64],
    pub mu: f64,
    pub position_weights: &'a [f64],
    pub recovery: &'a [bool],
}

impl RecoveryPenalty<'_> {
    /// μ·Σ_n q_n Σ_t w_t·(1 − π_θ(R | y_{n,<t})) / Σ_n q_n over the positions where y_{n,<t} is live
    /// (a token follows it), and its gradient: one batched forward and backward per batch, with
    /// ∂π(R)/∂z_a = π_a·(1[a ∈ R] − π(R)) on the logits z.
    pub fn value_and_gradient(&self, net: &Transformer, params: &[f64]) -> Result<(f64, Vec<f64>)> {
        let (t_max, v, p) = (net.config.length, net.config.vocab, net.num_params());
        let count = self.weights.len();
        let total_weight: f64 = self.weights.iter().sum();
        if count == 0 || self.responses.len() != count * t_max || self.position_weights.len() != t_max || self.recovery.len() != v || !(total_weight.is_finite() && total_weight > 0.0) {
            return Err(Error::InvalidArgument(format!("recovery penalty: {count} responses need N × T tokens, positive total weight, T position weights and a V-entry recovery mask")));
        }
        let parts = map_chunks_of(count, LEAVES_PER_TASK, |range| {
            let (mut value, mut grad) = (0.0, vec![0.0; p]);
            let mut work = net.work(BATCH_SEQUENCES);
            let mut delta = vec![0.0; BATCH_SEQUENCES * t_max * v];
            for first in range.clone().step_by(BATCH_SEQUENCES) {
                let last = (first + BATCH_SEQUENCES).min(range.end);
                let responses = &self.responses[first * t_max..last * t_max];
                net.forward_batch(params, responses, &mut work);
                for (r, (logits, d)) in work.logits.chunks_exact(v).zip(delta.chunks_exact_mut(v)).take(responses.len()).enumerate() {
                    if responses[r] == NO_TOKEN {
                        d.fill(0.0);
                        continue;
                    }
                    let scale = self.mu * self.position_weights[r % t_max] * self.weights[first + r / t_max] / total_weight;
                    d.copy_from_slice(logits);
                    softmax_in_place(d);
                    let recovered: f64 = d.iter().zip(self.recovery).filter(|(_, &r)| r).map(|(x, _)| x).sum();
                    value += scale * (1.0 - recovered);
                    d.iter_mut().zip(self.recovery).for_each(|(x, &r)| *x *= -scale * (if r { 1.0 } else { 0.0 } - recovered));
                }
                net.backward_batch(params, responses, &mut work, &delta, &mut grad);
            }
            (value, grad)
        });
        let (mut value, mut total) = (0.0, vec![0.0; p]);
        for (part_value, part) in &parts {
            value += part_value;
            crate::mlp::axpy(1.0, part, &mut total);
        }
        Ok((value, total))
    }
}

/// Transformers for sampled policy-gradient training: sampling by the KV cache, and score sums by
/// one batched backward pass per batch of responses, plus the gradient of the deep objective's
/// recovery penalty on sampled harmful responses when one is given. Per-position gradient norms
/// would take T backward passes per batch, so none are returned.
pub struct TransformerFamily<'n> {
    pub net: &'n Transformer,
    pub penalty: Option<RecoveryPenalty<'n>>,
}

impl Trainable for TransformerFamily<'_> {
    fn sample(&self, track: &Track, params: &[f64], request: &SampleRequest) -> Result<Samples> {
        self.net.check_params(params)?;
        sample(track, &TransformerPolicy { model: self.net, params }, request)
    }

    fn score_gradient(&self, _track: &Track, params: &[f64], samples: &Samples, coef: ScoreCoefficient, _uses_log_prob: bool) -> Result<(Vec<f64>, Vec<f64>)> {
        self.net.check_params(params)?;
        let mut grad = self.net.score_gradient(params, samples, coef);
        if let Some(penalty) = &self.penalty {
            crate::mlp::axpy(1.0, &penalty.value_and_gradient(self.net, params)?.1, &mut grad);
        }
        Ok((grad, vec![]))
    }

    fn harm_paths(&self, track: &Track, params: &[f64], samples: &Samples, source: &HarmSource, seed: u64) -> Result<HarmPaths> {
        self.net.check_params(params)?;
        harm_paths(track, &TransformerPolicy { model: self.net, params }, samples, source, seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DEFAULT_MEMORY_BUDGET;
    use crate::policy::TabularPolicy;
    use crate::transformer::TransformerConfig;

    /// V = 3, T = 4, order 1, end token 2; harm graded 0 / 0.5 / 1 by the count of token 1.
    fn spec() -> ScenarioSpec {
        // Rows: contexts 0, 1, 2 (the end token: never read), "<bos>".
        let base = vec![0.3, 0.3, 0.4, 0.2, 0.5, 0.3, 0.1, 0.2, 0.7, 0.5, 0.3, 0.2];
        ScenarioSpec { vocab: 3, length: 4, end_token: Some(2), order: 1, base, transitions: vec![0, 1, 0, 1, 2, 1, 2, 2, 2], harm: vec![0.0, 0.5, 1.0], start: 0 }
    }

    fn net() -> Transformer {
        Transformer::new(TransformerConfig { vocab: 3, length: 4, layers: 1, width: 8, heads: 2, mlp_width: 8 }).unwrap()
    }

    #[test]
    fn tree_has_one_state_per_prefix() {
        let tree = prefix_tree(spec(), DEFAULT_MEMORY_BUDGET).unwrap();
        // Live prefixes: those without the end token, of length < 4: 1 + 2 + 4 + 8; all states: 1 + 3 + 6 + 12 + 24.
        assert_eq!(tree.num_states(), 46);
        assert_eq!(tree.live.iter().filter(|&&l| l).count(), 15);
    }

    #[test]
    fn a_tree_beyond_the_budget_is_refused_before_it_is_built() {
        let per_state = bytes_per_state(4, 3, true);
        assert!(prefix_tree(spec(), 46 * per_state).is_ok());
        assert!(matches!(prefix_tree(spec(), 45 * per_state), Err(Error::StateSpaceTooLarge { .. })));
        let long = ScenarioSpec { length: 40, ..spec() };
        assert!(matches!(prefix_tree(long, DEFAULT_MEMORY_BUDGET), Err(Error::StateSpaceTooLarge { .. })));
    }

    #[test]
    fn tabulated_rows_are_the_forward_pass_at_each_prefix() {
        let (tree, net) = (prefix_tree(spec(), DEFAULT_MEMORY_BUDGET).unwrap(), net());
        let params = net.init_params(3);
        let table = tabulate(&net, &params, &tree).unwrap();
        let (n, v) = (tree.num_states(), 3);
        let mut cache = vec![0.0; net.cache_len()];
        let mut row = vec![0.0; v];
        // Walk every live state's prefix and compare with the KV-cache path.
        for s in (0..n).filter(|&s| tree.live[s]) {
            let mut prefix = vec![];
            let mut x = s;
            while x != 0 {
                prefix.push(tree.incoming_of(x)[0] % 3);
                x = tree.incoming_of(x)[0] as usize / 3;
            }
            prefix.reverse();
            net.next_logits(&params, &prefix, &mut cache, &mut row);
            for t in 0..4 {
                for a in 0..v {
                    assert!((table[(t * n + s) * v + a] - row[a]).abs() < 1e-12, "state {s}");
                }
            }
        }
    }

    #[test]
    fn pull_back_is_the_gradient_of_a_function_of_the_table() {
        // f(θ) = Σ_{t,s,a} c_{t,s,a}·logit_{t,s,a}(θ) against central differences.
        let (tree, net) = (prefix_tree(spec(), DEFAULT_MEMORY_BUDGET).unwrap(), net());
        let params = net.init_params(5);
        let len = 4 * tree.num_states() * 3;
        let c: Vec<f64> = (0..len).map(|i| ((i * 7919) % 13) as f64 / 13.0 - 0.5).collect();
        let f = |p: &[f64]| tabulate(&net, p, &tree).unwrap().iter().zip(&c).map(|(x, y)| x * y).sum::<f64>();
        let grad = pull_back(&net, &params, &tree, &c).unwrap();
        let h = 1e-5;
        for i in (0..params.len()).step_by(7) {
            let (mut up, mut down) = (params.clone(), params.clone());
            up[i] += h;
            down[i] -= h;
            let fd = (f(&up) - f(&down)) / (2.0 * h);
            assert!((fd - grad[i]).abs() < 1e-6 * (1.0 + fd.abs()), "parameter {i}: {fd} vs {}", grad[i]);
        }
    }

    #[test]
    fn the_recovery_penalty_gradient_is_its_derivative() {
        let net = net();
        let params = net.init_params(8);
        let responses = vec![0, 2, 1, 0, 1, 0, 2, NO_TOKEN, 2, 2, 2, 2];
        let (weights, position_weights, recovery) = (vec![1.0, 0.5, 0.25], vec![1.0, 0.9, 0.81, 0.729], vec![false, true, false]);
        let penalty = RecoveryPenalty { responses: &responses, weights: &weights, mu: 3.0, position_weights: &position_weights, recovery: &recovery };
        let (_, grad) = penalty.value_and_gradient(&net, &params).unwrap();
        let h = 1e-5;
        for i in (0..params.len()).step_by(5) {
            let (mut up, mut down) = (params.clone(), params.clone());
            up[i] += h;
            down[i] -= h;
            let fd = (penalty.value_and_gradient(&net, &up).unwrap().0 - penalty.value_and_gradient(&net, &down).unwrap().0) / (2.0 * h);
            assert!((fd - grad[i]).abs() < 1e-7 * (1.0 + fd.abs()), "parameter {i}: {fd} vs {}", grad[i]);
        }
    }

    #[test]
    fn a_scenario_model_is_refused() {
        let (model, net) = (Model::new(spec(), DEFAULT_MEMORY_BUDGET).unwrap(), net());
        assert!(tabulate(&net, &net.init_params(0), &model).is_err());
    }

    #[test]
    fn fitting_the_base_lowers_the_kl() {
        let (spec, net) = (spec(), net());
        let tree = prefix_tree(spec.clone(), DEFAULT_MEMORY_BUDGET).unwrap();
        let mut params = net.init_params(1);
        let exact_kl = |p: &[f64]| {
            let table = tabulate(&net, p, &tree).unwrap();
            let policy = TabularPolicy::new(&tree, &table).unwrap();
            crate::exact::kl_between(&tree, &crate::policy::BasePolicy { model: &tree }, &policy).iter().sum::<f64>()
        };
        let before = exact_kl(&params);
        fit_base(&net, &mut params, &spec, FitOptions { steps: 150, batch: 128, learning_rate: 0.02, seed: 0 }).unwrap();
        let after = exact_kl(&params);
        assert!(after < 0.1 * before, "KL {before} → {after}");
        // The sampled estimate agrees with the exact KL within 4 SE.
        let (mean, se) = sampled_kl_from_base(&net, &params, &spec, 20000, 9, 0).unwrap();
        assert!((mean - after).abs() < 4.0 * se, "{mean} ± {se} vs {after}");
    }
}
