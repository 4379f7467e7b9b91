//! The covariance kernel at one position: Ĝ_t = (1/N) Σ_n c_n·∇log π(y_{n,t} | y_{n,<t}) from the
//! position's columns (every response's token, policy input key and coefficient), grouped by
//! (input, token) so that each distinct input is differentiated once, never each sample; with the
//! per-sample variance and the projections on given directions. estimate.rs's `accumulate_scores`
//! (columns gathered from response-major samples) and by_position.rs (columns read in place) feed it.

use crate::error::{Error, Result};
use crate::estimate::{effective_support, mean_and_se, GradientEstimate, PositionEstimates, ScoreModel};
use crate::mlp::dot;
use crate::walk::NO_TOKEN;

/// What a position adds besides its block: Σ c²·||s||², the power sums Σx^k (k = 1..4) of the
/// projections x_n = c_n·⟨s_n, u⟩, and ||Ĝ_t||².
pub(crate) type PositionTotals = (f64, [f64; 4], f64);

pub(crate) struct ScoreKernel<'a> {
    policy: &'a dyn ScoreModel,
    directions: Option<&'a [f64]>,
    count: usize,
    vocab: usize,
    block_len: usize,
    with_variance: bool,
    /// Whether the score norms are needed (the variance, or projections).
    wanted: bool,
    /// V with directions (Σc³, Σc⁴ per (state, token) are then kept), else 0.
    higher: usize,
    /// S when the keys are exact states: contributions are then scatter-added per (state, token)
    /// in response order, which is the order of the grouping by sorting.
    states: Option<usize>,
    /// Whether `softmax_position` applies: state keys, the policy's softmax rows, no directions.
    softmax: bool,
}

impl<'a> ScoreKernel<'a> {
    /// The kernel for `count` responses of length `length`; `states` as the field.
    pub(crate) fn new(policy: &'a dyn ScoreModel, vocab: usize, length: usize, count: usize, directions: Option<&'a [f64]>, with_variance: bool, states: Option<usize>) -> Result<Self> {
        let block_len = policy.block_len();
        if let Some(u) = directions {
            if u.len() != length * block_len {
                return Err(Error::InvalidArgument(format!("directions: {} entries, expected T × block = {}", u.len(), length * block_len)));
            }
        }
        let higher = if directions.is_some() { vocab } else { 0 };
        let softmax = states.is_some() && directions.is_none() && policy.softmax_rows(1).is_some();
        Ok(ScoreKernel { policy, directions, count, vocab, block_len, with_variance, wanted: with_variance || directions.is_some(), higher, states, softmax })
    }

    pub(crate) fn block_len(&self) -> usize {
        self.block_len
    }

    /// Work space for `position`, reusable from one position to the next.
    pub(crate) fn sums(&self) -> StateSums {
        StateSums::new(self.states.unwrap_or(0), self.vocab, self.higher, self.softmax)
    }

    /// Position t (0-based, token t + 1) from its columns into its block, which starts at 0.
    pub(crate) fn position<K: Copy + Into<u64>>(&self, t: usize, tokens: &[u32], keys: &[K], coefs: &[f64], block: &mut [f64], sums: &mut StateSums) -> PositionTotals {
        let (policy, v, count, wanted, higher) = (self.policy, self.vocab, self.count, self.wanted, self.higher);
        let u = self.directions.map(|d| &d[t * self.block_len..(t + 1) * self.block_len]);
        let mut sq_norm_sum = 0.0;
        let mut proj_sums = [0.0; 4];
        let (mut norms, mut proj) = (vec![0.0; v], vec![0.0; v]);
        let mut scratch = vec![0.0; policy.scratch_len().max(1)];
        // One input key with Σc^k per token (Σc³, Σc⁴ only with directions).
        let mut add_key = |key: u64, sums: [&[f64]; 4], want: &[bool], block: &mut [f64]| {
            let [sum_c, sum_c2, sum_c3, sum_c4] = sums;
            policy.accumulate(t + 1, key, sum_c, block, want, &mut norms, u, &mut proj, &mut scratch);
            for a in (0..v).filter(|&a| want[a]) {
                sq_norm_sum += sum_c2[a] * norms[a];
                if u.is_some() {
                    let p2 = proj[a] * proj[a];
                    proj_sums[0] += sum_c[a] * proj[a];
                    proj_sums[1] += sum_c2[a] * p2;
                    proj_sums[2] += sum_c3[a] * (p2 * proj[a]);
                    proj_sums[3] += sum_c4[a] * (p2 * p2);
                }
            }
        };
        let softmax_rows = if self.softmax { policy.softmax_rows(t + 1) } else { None };
        match (self.states, softmax_rows) {
            (Some(s_count), Some(pi)) => sq_norm_sum = self.softmax_position(s_count, pi, tokens, keys, coefs, block, sums),
            (Some(s_count), None) => {
                // Σc per (state, token) is gathered in the block itself (a state's row is handed to
                // the policy and cleared just before the policy adds its score there).
                for n in 0..count {
                    let a = tokens[n];
                    if a == NO_TOKEN {
                        continue;
                    }
                    let s = keys[n].into() as usize;
                    let at = s * v + a as usize;
                    let c = coefs[n];
                    block[at] += c;
                    sums.c2[at] += c * c;
                    if higher > 0 {
                        sums.c3[at] += c * c * c;
                        sums.c4[at] += c * c * c * c;
                    }
                    sums.want[at] = wanted;
                    sums.seen[s] = true;
                }
                let mut sum_c = vec![0.0; v];
                for s in 0..s_count {
                    if !sums.seen[s] {
                        continue;
                    }
                    let (row, high) = (s * v..(s + 1) * v, s * higher..(s + 1) * higher);
                    sum_c.copy_from_slice(&block[row.clone()]);
                    block[row.clone()].fill(0.0);
                    add_key(s as u64, [&sum_c, &sums.c2[row.clone()], &sums.c3[high.clone()], &sums.c4[high.clone()]], &sums.want[row.clone()], block);
                    sums.clear(s, row, high);
                }
            }
            (None, _) => {
                // (key, token, coefficient) of every response with a token at t, grouped by key then token.
                let mut entries: Vec<(u64, u32, f64)> = (0..count).filter(|&n| tokens[n] != NO_TOKEN).map(|n| (keys[n].into(), tokens[n], coefs[n])).collect();
                entries.sort_by_key(|e| (e.0, e.1)); // stable: equal (key, token) stay in response order
                let mut sums = vec![vec![0.0; v]; 4];
                let mut want = vec![false; v];
                let mut i = 0;
                while i < entries.len() {
                    let key = entries[i].0;
                    sums.iter_mut().for_each(|x| x.fill(0.0));
                    want.fill(false);
                    while i < entries.len() && entries[i].0 == key {
                        let (_, a, c) = entries[i];
                        let a = a as usize;
                        sums[0][a] += c;
                        sums[1][a] += c * c;
                        sums[2][a] += c * c * c;
                        sums[3][a] += c * c * c * c;
                        want[a] = wanted;
                        i += 1;
                    }
                    add_key(key, [&sums[0], &sums[1], &sums[2], &sums[3]], &want, block);
                }
            }
        }
        block.iter_mut().for_each(|g| *g /= count as f64);
        (sq_norm_sum, proj_sums, dot(block, block))
    }

    /// `position` for a policy with `ScoreModel::softmax_rows` `pi`, without directions: Σc and Σc²
    /// per (state, token) side by side (one cache line per response), then per seen state the
    /// closed form s = e_a − π_s. The same sums in the same order as the general state-key branch
    /// (`accumulate` per state), so the same bits; returns Σ c²·||s||².
    #[allow(clippy::too_many_arguments)]
    fn softmax_position<K: Copy + Into<u64>>(&self, s_count: usize, pi: &[f64], tokens: &[u32], keys: &[K], coefs: &[f64], block: &mut [f64], sums: &mut StateSums) -> f64 {
        let v = self.vocab;
        for n in 0..self.count {
            let a = tokens[n];
            if a == NO_TOKEN {
                continue;
            }
            let s = keys[n].into() as usize;
            let (c, pair) = (coefs[n], &mut sums.pairs[s * v + a as usize]);
            pair[0] += c;
            pair[1] += c * c;
            sums.seen[s] = true;
        }
        let mut sq_norm_sum = 0.0;
        for s in 0..s_count {
            if !sums.seen[s] {
                continue;
            }
            let (pairs, pi, row) = (&mut sums.pairs[s * v..(s + 1) * v], &pi[s * v..(s + 1) * v], &mut block[s * v..(s + 1) * v]);
            let total: f64 = pairs.iter().map(|p| p[0]).sum();
            for ((g, p), pi) in row.iter_mut().zip(pairs.iter()).zip(pi) {
                // 0.0 + as the general branch adds to a cleared row (−0.0 becomes 0.0).
                *g = 0.0 + (p[0] - total * pi);
            }
            if self.wanted {
                // ||e_a − π||² = 1 − 2π_a + Σπ²; tokens not drawn have Σc² = 0 and add 0.
                let purity: f64 = pi.iter().map(|p| p * p).sum();
                for (p, pi) in pairs.iter().zip(pi) {
                    sq_norm_sum += p[1] * (1.0 - 2.0 * pi + purity);
                }
            }
            pairs.fill([0.0; 2]);
            sums.seen[s] = false;
        }
        sq_norm_sum
    }

    /// The estimate from every position's block (T × block) and totals, in position order.
    pub(crate) fn finish(&self, blocks: Vec<f64>, per_t: Vec<PositionTotals>) -> GradientEstimate {
        let (count, t_max) = (self.count, per_t.len());
        let (mut norm, mut variance) = (vec![0.0; t_max], vec![0.0; t_max]);
        let mut projection = PositionEstimates { mean: vec![f64::NAN; t_max], se: vec![f64::NAN; t_max], support: vec![0; t_max] };
        for (t, (sq_norm_sum, [s1, s2, s3, s4], norm_sq)) in per_t.into_iter().enumerate() {
            norm[t] = norm_sq.sqrt();
            variance[t] = if self.with_variance { (sq_norm_sum / count as f64 - norm_sq).max(0.0) } else { f64::NAN };
            if self.directions.is_some() {
                let (m, se) = mean_and_se(s1, s2, count);
                projection.mean[t] = m;
                projection.se[t] = se;
                // Central moments of the projections from their power sums.
                let n = count as f64;
                let central2 = (s2 - n * m * m).max(0.0);
                let central4 = (s4 - 4.0 * m * s3 + 6.0 * m * m * s2 - 3.0 * n * ((m * m) * (m * m))).max(0.0);
                projection.support[t] = effective_support(central2, central4);
            }
        }
        GradientEstimate { blocks, block_len: self.block_len, norm, variance, projection }
    }
}

/// Σc^k (k = 2..4) per (state, token) at one position, which tokens were drawn there and which
/// states were seen: kept across positions, and only the rows of the seen states are cleared after
/// each (not S × V entries per position).
pub(crate) struct StateSums {
    c2: Vec<f64>,
    /// Σc³, Σc⁴: only with directions (else empty).
    c3: Vec<f64>,
    c4: Vec<f64>,
    want: Vec<bool>,
    seen: Vec<bool>,
    /// (Σc, Σc²) per (state, token), for `softmax_position`.
    pairs: Vec<[f64; 2]>,
}

impl StateSums {
    /// Work space for S = `states` (0: keys that are not states), for the closed form of softmax
    /// rows (`pairs`) or the general branch.
    fn new(states: usize, vocab: usize, higher: usize, softmax: bool) -> Self {
        let (general, closed) = if softmax { (0, states * vocab) } else { (states * vocab, 0) };
        let c3 = vec![0.0; states * higher];
        StateSums { c2: vec![0.0; general], c4: c3.clone(), c3, want: vec![false; general], seen: vec![false; states], pairs: vec![[0.0; 2]; closed] }
    }

    fn clear(&mut self, state: usize, row: std::ops::Range<usize>, high: std::ops::Range<usize>) {
        self.c2[row.clone()].fill(0.0);
        self.want[row].fill(false);
        self.c3[high.clone()].fill(0.0);
        self.c4[high].fill(0.0);
        self.seen[state] = false;
    }
}
