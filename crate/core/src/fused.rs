//! The passes of the full analysis (`analysis::analyze`), fused so that memory is swept twice:
//!
//! 1. one forward pass of the base policy stores p_t(s) for t = 0..T (the deterministic CSR gather
//!    of `exact::forward`, with the flow p_{t−1}(src)·p(a|src) read off the source state instead of
//!    a materialised S × V flow table; p_t is bit-identical to `exact::forward`'s);
//! 2. one backward pass computes, layer by layer, the base's conditional harm h_t, the Gibbs values
//!    W_t and Z_t = exp(−W_t) and the Gibbs policy's conditional harm h*_t, and, at each state while
//!    its next states are in cache, accumulates everything the analysis reports at that layer:
//!    I_t, ||G_t||², F̄_t, the settled mass, ASR of both policies, and KL(π*_t(·|s) ‖ base) weighted
//!    by the harmful-prefix distribution Q and by the Gibbs policy's own state distribution.
//!
//! No forward pass of the Gibbs policy is needed: P*(y_≤t) = P_base(y_≤t)·Z_t(y_≤t)/Z_0, so the
//! Gibbs state distribution is p*_t(s) = p_t(s)·Z_t(s)/Z_0 (sinks keep Z, so they carry their mass).
//! Likewise Q's is q_t(s) = p_t(s)·h_t(s)/E_base[H]. Both normalisers are known only at the end of
//! the backward pass, so the per-layer sums are taken unnormalised and divided at the end.
//!
//! The backward tables are only kept for two layers at a time, interleaved (one 32-byte cell per
//! state) so that the random gather through `next` fetches one cache line per edge.
//!
//! Determinism: work is split in fixed chunks of `CHUNK` states and per-chunk partial sums are
//! combined in chunk order, so results are bit-identical whatever the thread count, and whether a
//! layer runs in parallel or (when small) on the calling thread.

use rayon::prelude::*;

use crate::exact::{HarmProfile, HORIZON_FLOOR, SETTLED_TOLERANCE};
use crate::gibbs::{row_ratio, soft_min, SoftMin, FAST_LAMBDA_MAX};
use crate::model::Model;
use crate::parallel::CHUNK;

/// Layers with fewer edges (states × V) than this run on the calling thread: below it a rayon
/// fork–join costs more than the layer's work.
const PARALLEL_MIN_EDGES: usize = 1 << 15;

/// Both passes prefetch what the state this many states ahead will gather (next states' cells,
/// incoming edges' sources), so that the random gathers of several states are in flight at once.
const PREFETCH_AHEAD: usize = 2;

/// Below this many states a layer's tables sit in L2 and prefetching only costs instructions.
const PREFETCH_MIN_STATES: usize = 1 << 13;

/// Hints the CPU to bring `x` into cache, L1 and below (no effect on results).
#[inline(always)]
pub(crate) fn prefetch<T>(x: &T) {
    prefetch_hinted::<3, T>(x) // _MM_HINT_T0
}

/// Hints the CPU to bring `x` into L2 and below, not L1 (no effect on results): for data needed
/// later than the next few hundred instructions.
#[inline(always)]
pub(crate) fn prefetch_l2<T>(x: &T) {
    prefetch_hinted::<2, T>(x) // _MM_HINT_T1
}

/// Hints the CPU to bring `x`'s line into cache ready to be written (no effect on results): a
/// store to a line not in cache must first read it, and asked for early, those reads overlap.
#[inline(always)]
pub(crate) fn prefetch_for_write<T>(x: &T) {
    prefetch_hinted::<7, T>(x) // _MM_HINT_ET0 (PREFETCHW)
}

#[inline(always)]
fn prefetch_hinted<const HINT: i32, T>(x: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint; it never faults and `x` is a valid reference anyway.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<HINT>(x as *const T as *const i8)
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = x;
}

/// One state's entry of the backward tables at one position.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(32))]
struct Cell {
    /// h_t(s) under the base.
    h: f64,
    /// W_t(s) = −log Z_t(s), Z_t(s) = E_base[exp(−λH) | s at t].
    w: f64,
    /// Z_t(s) = exp(−W_t(s)) ∈ [e^{−λ}, 1] (used when λ ≤ FAST_LAMBDA_MAX).
    z: f64,
    /// h*_t(s) under the Gibbs policy.
    hs: f64,
}

/// What the fused passes produce; `analysis::analyze` assembles the report from it.
pub(crate) struct Fused {
    pub profile: HarmProfile,
    pub aligned_expected_harm: f64,
    pub kl_on_policy: Vec<f64>,
    pub kl_teacher_forced: Vec<f64>,
    pub asr_base: Vec<f64>,
    pub asr_aligned: Vec<f64>,
}

/// Runs the analysis passes at λ (finite, ≥ 0; checked by the caller). Beyond FAST_LAMBDA_MAX the
/// backward pass takes the exp of log-ratios and the on-policy weights are summed in log scale.
pub(crate) fn analyze(model: &Model, lambda: f64, tolerance: f64) -> Fused {
    let parallel = model.num_states() * model.vocab() >= PARALLEL_MIN_EDGES && rayon::current_num_threads() > 1;
    let prefetching = model.num_states() >= PREFETCH_MIN_STATES;
    let p = base_forward(model, parallel, prefetching);
    if lambda <= FAST_LAMBDA_MAX {
        backward::<true>(model, lambda, tolerance, &p, parallel, prefetching)
    } else {
        backward::<false>(model, lambda, tolerance, &p, parallel, prefetching)
    }
}

/// Runs `f(chunk index, chunk)` over consecutive CHUNK-sized pieces of `out`, in parallel or not,
/// and returns the results in chunk order.
fn for_chunks<T: Send, R: Send>(out: &mut [T], parallel: bool, f: impl Fn(usize, &mut [T]) -> R + Sync + Send) -> Vec<R> {
    if parallel {
        out.par_chunks_mut(CHUNK).enumerate().map(|(c, o)| f(c, o)).collect()
    } else {
        out.chunks_mut(CHUNK).enumerate().map(|(c, o)| f(c, o)).collect()
    }
}

/// e = s·V + a → (s, a) with a multiply (Lemire's division by a run-time constant, exact for 32-bit
/// numerators).
#[derive(Clone, Copy)]
struct EdgeSplit {
    v: u32,
    magic: u64,
}

impl EdgeSplit {
    fn new(v: usize) -> Self {
        let v = v as u32;
        EdgeSplit { v, magic: if v > 1 { u64::MAX / v as u64 + 1 } else { 0 } }
    }
    #[inline(always)]
    fn split(self, e: u32) -> (usize, usize) {
        let s = if self.v > 1 { ((self.magic as u128 * e as u128) >> 64) as u32 } else { e };
        (s as usize, (e - s * self.v) as usize)
    }
}

/// p_t(s) of the base for t = 0..T at t·S + s: p_t(s) = [s is a sink]·p_{t−1}(s) + Σ over incoming
/// edges (src, a) of p_{t−1}(src)·p(a|src), summed in the CSR edge order (as `exact::forward`).
fn base_forward(model: &Model, parallel: bool, prefetching: bool) -> Vec<f64> {
    let n = model.num_states();
    let v = model.vocab();
    let t_max = model.length();
    let edges = EdgeSplit::new(v);
    // p(a|src) of every incoming edge, in edge order: the layers then gather only p_{t−1}(src),
    // not the source's context as well (the budget counts this table as the flow row).
    let edge_probs: Vec<f64> = model.incoming.iter().map(|&e| {
        let (src, a) = edges.split(e);
        model.spec.base[model.context[src] as usize * v + a]
    }).collect();
    let mut p = vec![0.0; (t_max + 1) * n];
    p[0] = 1.0;
    for t in 1..=t_max {
        let (before, after) = p.split_at_mut(t * n);
        let prev = &before[(t - 1) * n..];
        for_chunks(&mut after[..n], parallel, |chunk, out| {
            let end = chunk * CHUNK + out.len();
            for (i, q) in out.iter_mut().enumerate() {
                let s = chunk * CHUNK + i;
                if prefetching && s + PREFETCH_AHEAD < end {
                    for &e in model.incoming_of(s + PREFETCH_AHEAD) {
                        prefetch(&prev[edges.split(e).0]);
                    }
                }
                let stay = if model.live[s] { 0.0 } else { prev[s] };
                let range = model.incoming_start[s] as usize..model.incoming_start[s + 1] as usize;
                *q = model.incoming[range.clone()].iter().zip(&edge_probs[range]).fold(stay, |acc, (&e, &pa)| acc + prev[edges.split(e).0] * pa);
            }
        });
    }
    p
}

fn is_settled(h: f64) -> bool {
    h <= SETTLED_TOLERANCE || h >= 1.0 - SETTLED_TOLERANCE
}

/// Per-chunk partial sums of one layer t − 1 (position t).
#[derive(Clone, Copy)]
struct Partial {
    /// Σ p over states with h_{t−1} settled.
    settled: f64,
    /// Σ p·Var_π(h_t | s), Σ p²·Σ_a π²(h_t(s·a) − h_{t−1}(s))², max over reached live states of 1 − Σπ².
    information: f64,
    grad_sq: f64,
    fisher_max: f64,
    /// Σ p·h·h and Σ p·h·h* (ASR_{t−1} times E_base[H]).
    asr_base: f64,
    asr_aligned: f64,
    /// Σ p·h·KL_t(s) (teacher-forced KL times E_base[H]).
    kl_teacher_forced: f64,
    /// Fast rows: Σ p·Z_{t−1}·KL_t(s) (on-policy KL times Z_0). Slow rows: the same sum written as
    /// exp(kl_scale)·kl_on_policy with kl_scale = max log(p·Z_{t−1}), terms summed as
    /// exp(log(p·Z) − kl_scale)·KL.
    kl_on_policy: f64,
    kl_scale: f64,
}

impl Default for Partial {
    fn default() -> Self {
        Partial {
            settled: 0.0,
            information: 0.0,
            grad_sq: 0.0,
            fisher_max: 0.0,
            asr_base: 0.0,
            asr_aligned: 0.0,
            kl_teacher_forced: 0.0,
            kl_on_policy: 0.0,
            kl_scale: f64::NEG_INFINITY,
        }
    }
}

impl Partial {
    /// Adds exp(log_weight)·x to the log-scaled on-policy sum.
    fn add_scaled(&mut self, log_weight: f64, x: f64) {
        if log_weight == f64::NEG_INFINITY {
            return;
        }
        if log_weight > self.kl_scale {
            self.kl_on_policy = if self.kl_scale == f64::NEG_INFINITY { 0.0 } else { self.kl_on_policy * (self.kl_scale - log_weight).exp() };
            self.kl_scale = log_weight;
        }
        self.kl_on_policy += (log_weight - self.kl_scale).exp() * x;
    }

    /// Adds a later chunk's partial sums (chunk order fixes the rounding).
    fn absorb<const FAST: bool>(&mut self, p: &Partial) {
        self.settled += p.settled;
        self.information += p.information;
        self.grad_sq += p.grad_sq;
        self.fisher_max = self.fisher_max.max(p.fisher_max);
        self.asr_base += p.asr_base;
        self.asr_aligned += p.asr_aligned;
        self.kl_teacher_forced += p.kl_teacher_forced;
        if FAST {
            self.kl_on_policy += p.kl_on_policy;
        } else if p.kl_scale != f64::NEG_INFINITY {
            if p.kl_scale > self.kl_scale {
                self.kl_on_policy = if self.kl_scale == f64::NEG_INFINITY { 0.0 } else { self.kl_on_policy * (self.kl_scale - p.kl_scale).exp() };
                self.kl_scale = p.kl_scale;
            }
            self.kl_on_policy += p.kl_on_policy * (p.kl_scale - self.kl_scale).exp();
        }
    }
}

/// Backward induction of h, W (and Z), h* from t = T down to 0, with the per-layer accumulations.
///
/// W and Z, the Gibbs rows π*_t(a|s) = p_a·Z_t(s·a)/Z_{t−1}(s) (fast rows, λ ≤ FAST_LAMBDA_MAX) or
/// p_a·exp(W_{t−1}(s) − W_t(s·a)), and h* = Σ_a π*·h*_t(s·a) are computed with the arithmetic of
/// `gibbs::GibbsPolicy` and `exact::conditional_harm`, operation for operation, so that they are
/// bit-identical to those (and h to `conditional_harm` of the base).
fn backward<const FAST: bool>(model: &Model, lambda: f64, tolerance: f64, p: &[f64], parallel: bool, prefetching: bool) -> Fused {
    let n = model.num_states();
    let t_max = model.length();
    let mut later: Vec<Cell> = (0..n)
        .map(|s| {
            let h = model.harm(s);
            let w = lambda * h;
            Cell { h, w, z: (-w).exp(), hs: h }
        })
        .collect();
    let mut earlier = vec![Cell::default(); n];
    // layers[t] sums over the states at position t (for t < T the statistics of position t + 1).
    let mut layers = vec![Partial::default(); t_max];
    for t in (1..=t_max).rev() {
        let p_prev = &p[(t - 1) * n..t * n];
        let from = &later;
        let parts = for_chunks(&mut earlier, parallel, |chunk, out| {
            let mut acc = Partial::default();
            let end = chunk * CHUNK + out.len();
            for (i, cell) in out.iter_mut().enumerate() {
                let s = chunk * CHUNK + i;
                let ahead = s + PREFETCH_AHEAD;
                if prefetching && ahead < end && model.live[ahead] {
                    for &nx in model.next_row(ahead) {
                        prefetch(&from[nx as usize]);
                    }
                }
                if model.live[s] {
                    *cell = backward_cell::<FAST>(model.base_row(s), model.next_row(s), from);
                    accumulate::<FAST>(model, s, p_prev[s], cell, from, &mut acc);
                } else {
                    *cell = from[s];
                    accumulate_sink(p_prev[s], cell, &mut acc);
                }
            }
            acc
        });
        let total = &mut layers[t - 1];
        for part in &parts {
            total.absorb::<FAST>(part);
        }
        std::mem::swap(&mut later, &mut earlier);
    }
    let start = later[0];
    let expected_harm = start.h;
    let has_q = expected_harm > 0.0;

    // Position T: settled mass, ASR_T and Var(H), over p_T and h_T = h*_T = harm.
    let p_last = &p[t_max * n..];
    let final_parts: Vec<[f64; 3]> = crate::parallel::map_chunks(n, |range| {
        let (mut settled, mut var, mut asr) = (0.0, 0.0, 0.0);
        for s in range {
            let (ps, h) = (p_last[s], model.harm(s));
            if is_settled(h) {
                settled += ps;
            }
            var += ps * (h - expected_harm).powi(2);
            asr += ps * h * h;
        }
        [settled, var, asr]
    });
    let mut final_sums = [0.0; 3];
    for part in final_parts {
        for k in 0..3 {
            final_sums[k] += part[k];
        }
    }
    let [settled_final, harm_variance, asr_final] = final_sums;

    // Q is undefined when E_base[H] = 0: its KL and ASR are NaN.
    let on_q = |x: f64| if has_q { x / expected_harm } else { f64::NAN };
    let on_policy = |l: &Partial| {
        if FAST {
            l.kl_on_policy / start.z
        } else if l.kl_scale == f64::NEG_INFINITY {
            0.0
        } else {
            l.kl_on_policy * (l.kl_scale + start.w).exp()
        }
    };
    let information: Vec<f64> = layers.iter().map(|l| l.information).collect();
    let fisher_max: Vec<f64> = layers.iter().map(|l| l.fisher_max).collect();
    let mut settled: Vec<f64> = layers.iter().map(|l| l.settled).collect();
    settled.push(settled_final);
    let threshold = tolerance * harm_variance + HORIZON_FLOOR;
    let horizon = (0..t_max).rev().find(|&i| information[i] > threshold).map_or(0, |i| i + 1);
    let decision_time = (0..=t_max).map(|t| settled[t] - if t == 0 { 0.0 } else { settled[t - 1] }).collect();
    let mut asr_base: Vec<f64> = layers.iter().map(|l| on_q(l.asr_base)).collect();
    asr_base.push(on_q(asr_final));
    let mut asr_aligned: Vec<f64> = layers.iter().map(|l| on_q(l.asr_aligned)).collect();
    asr_aligned.push(on_q(asr_final));
    let profile = HarmProfile {
        expected_harm,
        harm_variance,
        grad_norm: layers.iter().map(|l| l.grad_sq.sqrt()).collect(),
        grad_bound: information.iter().zip(&fisher_max).map(|(i, f)| (i * f).sqrt()).collect(),
        harm_information: information,
        fisher_max,
        horizon,
        decision_time,
        undecided: 1.0 - settled[t_max],
    };
    Fused {
        profile,
        aligned_expected_harm: start.hs,
        kl_on_policy: layers.iter().map(on_policy).collect(),
        kl_teacher_forced: layers.iter().map(|l| on_q(l.kl_teacher_forced)).collect(),
        asr_base,
        asr_aligned,
    }
}

/// h_{t−1}, W_{t−1} and Z_{t−1} at a live state from its next states' cells at t (h* is filled by
/// `accumulate`, which needs Z_{t−1}).
#[inline(always)]
fn backward_cell<const FAST: bool>(row: &[f64], next: &[u32], later: &[Cell]) -> Cell {
    // As exact::conditional_harm: Σ_a p_a·h_t(s·a) in token order.
    let mut h = -0.0;
    let w = if FAST {
        let mut soft = SoftMin::new();
        for (&pa, &nx) in row.iter().zip(next) {
            let c = &later[nx as usize];
            h += pa * c.h;
            soft.add(pa, c.w, c.z);
        }
        soft.value()
    } else {
        for (&pa, &nx) in row.iter().zip(next) {
            h += pa * later[nx as usize].h;
        }
        soft_min(row, next, |n| later[n].w)
    };
    Cell { h, w, z: (-w).exp(), hs: 0.0 }
}

/// Adds a sink (it emits nothing) at position t − 1 with probability p = p_{t−1}(s) to the sums.
#[inline(always)]
fn accumulate_sink(p: f64, cell: &Cell, acc: &mut Partial) {
    if is_settled(cell.h) {
        acc.settled += p;
    }
    let ph = p * cell.h;
    acc.asr_base += ph * cell.h;
    acc.asr_aligned += ph * cell.hs;
}

/// Fills h*_{t−1}(s) of a live state and adds the state at position t − 1 (probability
/// p = p_{t−1}(s), next states' cells at t) to the layer's sums.
#[inline(always)]
fn accumulate<const FAST: bool>(model: &Model, s: usize, p: f64, cell: &mut Cell, later: &[Cell], acc: &mut Partial) {
    let h_prev = cell.h;
    let row = model.base_row(s);
    let next = model.next_row(s);
    let (mut var, mut sq, mut purity, mut kl, mut hs) = (0.0, 0.0, 0.0, 0.0, -0.0);
    // 1/Z_{t−1}(s) or W_{t−1}(s), as GibbsPolicy::probs.
    let term = if FAST { 1.0 / cell.z } else { cell.w };
    for (&pi, &nx) in row.iter().zip(next) {
        let c = &later[nx as usize];
        let delta = c.h - h_prev;
        var += pi * delta * delta;
        sq += pi * pi * delta * delta;
        purity += pi * pi;
        // π*_t(a|s) = p_a·r_a, r_a = exp(W_{t−1}(s) − W_t(s·a)); KL(π*_t(·|s) ‖ p) = Σ_a p_a·r_a·log r_a.
        if FAST || pi > 0.0 {
            let ratio = row_ratio::<FAST>(term, c.w, c.z);
            let star = pi * ratio;
            hs += star * c.hs;
            kl += star * (cell.w - c.w);
        }
    }
    cell.hs = hs;
    accumulate_sink(p, cell, acc);
    if p == 0.0 {
        return;
    }
    acc.information += p * var;
    acc.grad_sq += p * p * sq;
    acc.fisher_max = acc.fisher_max.max(1.0 - purity);
    if p * h_prev > 0.0 {
        acc.kl_teacher_forced += p * h_prev * kl;
    }
    if FAST {
        acc.kl_on_policy += p * cell.z * kl;
    } else {
        acc.add_scaled(p.ln() - cell.w, kl);
    }
}
