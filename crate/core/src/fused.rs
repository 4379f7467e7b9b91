//! The passes of the full analysis (`analysis::analyze`), fused so that memory is swept as few times
//! as possible: one backward pass computes, layer by layer, the base's conditional harm h_t, the
//! Gibbs values W_t and Z_t = exp(−W_t), and the Gibbs policy's conditional harm h*_t; one forward
//! pass then moves the base's and the Gibbs policy's state distributions together, and per layer
//! accumulates everything the analysis reports (harm information, gradient norms, Fisher bound,
//! settled mass, on-policy and teacher-forced KL, prefilling success of both policies).
//!
//! The four backward tables are interleaved (one 32-byte cell per (t, s)) so that the random gather
//! through `next` fetches one cache line per edge. The forward pass computes the next layer's
//! probabilities by the same deterministic CSR gather as `exact::forward` (incoming edges in a fixed
//! order), reading the flow p_{t−1}(src)·π_t(a|src) off the source state instead of materialising
//! an S × V flow table.
//!
//! Determinism: work is split in fixed chunks of `CHUNK` states and per-chunk partial sums are
//! combined in chunk order, so results are bit-identical whatever the thread count, and whether a
//! layer runs in parallel or (when small) on the calling thread.

use rayon::prelude::*;

use crate::exact::{HarmProfile, HORIZON_FLOOR, SETTLED_TOLERANCE};
use crate::gibbs::FAST_LAMBDA_MAX;
use crate::model::Model;
use crate::parallel::CHUNK;

/// Layers with fewer edges (states × V) than this run on the calling thread: below it a rayon
/// fork–join costs more than the layer's work.
const PARALLEL_MIN_EDGES: usize = 1 << 15;

/// One (t, s) entry of the backward tables.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(32))]
struct Cell {
    /// h_t(s) under the base.
    h: f64,
    /// W_t(s) = −log Z_t(s), Z_t(s) = E_base[exp(−λH) | s at t].
    w: f64,
    /// Z_t(s) = exp(−W_t(s)) ∈ [e^{−λ}, 1] (only used when λ ≤ FAST_LAMBDA_MAX).
    z: f64,
    /// h*_t(s) under the Gibbs policy.
    hs: f64,
}

/// Probability of a state under the base and under the Gibbs policy at the current layer.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(32))]
struct Mass {
    p: f64,
    ps: f64,
    /// p*_t(s)/Z_t(s) (fast rows), read by the gather of the next layer.
    g: f64,
    /// Offset of the state's base row in `spec.base`.
    row: usize,
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

/// Runs the analysis passes at λ (finite, ≥ 0; checked by the caller).
pub(crate) fn analyze(model: &Model, lambda: f64, tolerance: f64) -> Fused {
    let parallel = model.num_states() * model.vocab() >= PARALLEL_MIN_EDGES && rayon::current_num_threads() > 1;
    if lambda <= FAST_LAMBDA_MAX {
        let table = backward::<true>(model, lambda, parallel);
        forward::<true>(model, &table, tolerance, parallel)
    } else {
        let table = backward::<false>(model, lambda, parallel);
        forward::<false>(model, &table, tolerance, parallel)
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

/// A (T+1)·S table of cells, zero-initialised without touching the pages (every cell is written
/// once by the backward pass).
fn zeroed_cells(len: usize) -> Vec<Cell> {
    if len == 0 {
        return Vec::new();
    }
    let layout = std::alloc::Layout::array::<Cell>(len).expect("table size overflows");
    // SAFETY: Cell is four f64 (repr(C)), for which all-zero bytes are a valid value (+0.0); the
    // pointer comes from the global allocator with the layout of a [Cell; len], as Vec requires.
    unsafe {
        let ptr = std::alloc::alloc_zeroed(layout) as *mut Cell;
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Vec::from_raw_parts(ptr, len, len)
    }
}

/// Backward induction of h, W (and Z), h* from t = T down to 0.
///
/// Fast rows (λ ≤ FAST_LAMBDA_MAX): with Z_t(n) = exp(−W_t(n)) tabulated, exp(shift − W_t(n)) =
/// Z_t(n)/Z_t(n_min), so W_{t−1}(s) = shift − log(Σ_a p_a·Z_t(n_a) / Z_t(n_min)) (the soft-min of
/// `gibbs::GibbsPolicy::new`, shifted by the smallest next value) takes no exp per edge, and
/// h*_{t−1}(s) = Σ_a p_a·Z_t(n_a)·h*_t(n_a) / Σ_a p_a·Z_t(n_a). Slow rows take the exps.
fn backward<const FAST: bool>(model: &Model, lambda: f64, parallel: bool) -> Vec<Cell> {
    let n = model.num_states();
    let t_max = model.length();
    let mut table = zeroed_cells((t_max + 1) * n);
    for s in 0..n {
        let h = model.harm(s);
        let w = lambda * h;
        table[t_max * n + s] = Cell { h, w, z: (-w).exp(), hs: h };
    }
    for t in (1..=t_max).rev() {
        let (before, after) = table.split_at_mut(t * n);
        let later = &after[..n];
        for_chunks(&mut before[(t - 1) * n..], parallel, |chunk, out| {
            for (i, cell) in out.iter_mut().enumerate() {
                let s = chunk * CHUNK + i;
                *cell = if model.live[s] { backward_cell::<FAST>(model.base_row(s), model.next_row(s), later) } else { later[s] };
            }
        });
    }
    table
}

#[inline(always)]
fn backward_cell<const FAST: bool>(row: &[f64], next: &[u32], later: &[Cell]) -> Cell {
    let mut h = 0.0;
    let mut shift = f64::INFINITY;
    if FAST {
        let (mut z_shift, mut z_sum, mut hs_sum) = (1.0, 0.0, 0.0);
        for (&pa, &nx) in row.iter().zip(next) {
            let c = &later[nx as usize];
            h += pa * c.h;
            let weight = pa * c.z;
            z_sum += weight;
            hs_sum += weight * c.hs;
            if pa > 0.0 && c.w < shift {
                shift = c.w;
                z_shift = c.z;
            }
        }
        let w = shift - (z_sum / z_shift).ln();
        Cell { h, w, z: (-w).exp(), hs: hs_sum / z_sum }
    } else {
        for (&pa, &nx) in row.iter().zip(next) {
            let c = &later[nx as usize];
            h += pa * c.h;
            if pa > 0.0 && c.w < shift {
                shift = c.w;
            }
        }
        let (mut sum, mut hs_sum) = (0.0, 0.0);
        for (&pa, &nx) in row.iter().zip(next) {
            if pa > 0.0 {
                let c = &later[nx as usize];
                let weight = pa * (shift - c.w).exp();
                sum += weight;
                hs_sum += weight * c.hs;
            }
        }
        let w = shift - sum.ln();
        Cell { h, w, z: (-w).exp(), hs: hs_sum / sum }
    }
}

fn is_settled(h: f64) -> bool {
    h <= SETTLED_TOLERANCE || h >= 1.0 - SETTLED_TOLERANCE
}

/// Per-chunk partial sums of one layer.
#[derive(Clone, Copy, Default)]
struct Partial {
    settled: f64,
    information: f64,
    grad_sq: f64,
    fisher_max: f64,
    asr_base: f64,
    asr_aligned: f64,
    kl_teacher_forced: f64,
    kl_on_policy: f64,
}

/// e = s·V + a → (s, a) by a multiply (Lemire's division by a run-time constant, exact for 32-bit
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

/// The forward pass of the base and the Gibbs policy together, with every per-layer accumulation.
fn forward<const FAST: bool>(model: &Model, table: &[Cell], tolerance: f64, parallel: bool) -> Fused {
    let n = model.num_states();
    let v = model.vocab();
    let t_max = model.length();
    let base = &model.spec.base;
    let edges = EdgeSplit::new(v);
    // Q (harmful prefixes) is p·h/E_base[H]; undefined when E_base[H] = 0.
    let mass = table[0].h;
    let has_q = mass > 0.0;

    let mut cur: Vec<Mass> = (0..n).map(|s| Mass { row: model.context[s] as usize * v, ..Mass::default() }).collect();
    let mut next = cur.clone();
    cur[0].p = 1.0;
    cur[0].ps = 1.0;
    if FAST {
        cur[0].g = 1.0 / table[0].z;
    }

    let mut parts_by_layer: Vec<Partial> = Vec::with_capacity(t_max + 1);
    for t in 1..=t_max {
        let now = &table[(t - 1) * n..t * n];
        let later = &table[t * n..(t + 1) * n];
        let from = &cur;
        let parts = for_chunks(&mut next, parallel, |chunk, out| {
            let mut acc = Partial::default();
            for (i, to) in out.iter_mut().enumerate() {
                let s = chunk * CHUNK + i;
                let m = from[s];
                let cell = now[s];
                layer_stats::<FAST>(model, s, m, cell, later, mass, has_q, &mut acc);
                // Gather: p_t(s) = [s is a sink]·p_{t−1}(s) + Σ incoming flow, in the CSR edge order.
                let live = model.live[s];
                let (mut pb, mut gs) = (if live { 0.0 } else { m.p }, 0.0);
                let target = &later[s];
                for &e in model.incoming_of(s) {
                    let (src, a) = edges.split(e);
                    let f = &from[src];
                    let pa = base[f.row + a];
                    pb += f.p * pa;
                    if FAST {
                        gs += f.g * pa;
                    } else if f.ps > 0.0 && pa > 0.0 {
                        gs += f.ps * pa * (now[src].w - target.w).exp();
                    }
                }
                let stay = if live { 0.0 } else { m.ps };
                let ps = if FAST { stay + target.z * gs } else { stay + gs };
                *to = Mass { p: pb, ps, g: if FAST { ps / target.z } else { 0.0 }, row: m.row };
            }
            acc
        });
        parts_by_layer.push(combine(&parts));
        std::mem::swap(&mut cur, &mut next);
    }

    // Layer T: settled mass, ASR_T and Var(H).
    let expected_harm = mass;
    let last = &table[t_max * n..];
    let final_parts: Vec<[f64; 4]> = crate::parallel::map_chunks(n, |range| {
        let (mut settled, mut var, mut asr_b, mut asr_a) = (0.0, 0.0, 0.0, 0.0);
        for s in range {
            let p = cur[s].p;
            let cell = &last[s];
            if is_settled(cell.h) {
                settled += p;
            }
            var += p * (model.harm(s) - expected_harm).powi(2);
            if has_q {
                let q = p * cell.h / mass;
                asr_b += q * cell.h;
                asr_a += q * cell.hs;
            }
        }
        [settled, var, asr_b, asr_a]
    });
    let mut final_sums = [0.0; 4];
    for part in final_parts {
        for k in 0..4 {
            final_sums[k] += part[k];
        }
    }
    let [settled_final, harm_variance, asr_b_final, asr_a_final] = final_sums;

    let information: Vec<f64> = parts_by_layer.iter().map(|p| p.information).collect();
    let fisher_max: Vec<f64> = parts_by_layer.iter().map(|p| p.fisher_max).collect();
    let mut settled: Vec<f64> = parts_by_layer.iter().map(|p| p.settled).collect();
    settled.push(settled_final);
    let threshold = tolerance * harm_variance + HORIZON_FLOOR;
    let horizon = (0..t_max).rev().find(|&i| information[i] > threshold).map_or(0, |i| i + 1);
    let decision_time = (0..=t_max).map(|t| settled[t] - if t == 0 { 0.0 } else { settled[t - 1] }).collect();
    let nan_unless_q = |x: f64| if has_q { x } else { f64::NAN };
    let mut asr_base: Vec<f64> = parts_by_layer.iter().map(|p| nan_unless_q(p.asr_base)).collect();
    asr_base.push(nan_unless_q(asr_b_final));
    let mut asr_aligned: Vec<f64> = parts_by_layer.iter().map(|p| nan_unless_q(p.asr_aligned)).collect();
    asr_aligned.push(nan_unless_q(asr_a_final));
    let profile = HarmProfile {
        expected_harm,
        harm_variance,
        grad_norm: parts_by_layer.iter().map(|p| p.grad_sq.sqrt()).collect(),
        grad_bound: information.iter().zip(&fisher_max).map(|(i, f)| (i * f).sqrt()).collect(),
        harm_information: information,
        fisher_max,
        horizon,
        decision_time,
        undecided: 1.0 - settled[t_max],
    };
    Fused {
        profile,
        aligned_expected_harm: table[0].hs,
        kl_on_policy: parts_by_layer.iter().map(|p| p.kl_on_policy).collect(),
        kl_teacher_forced: parts_by_layer.iter().map(|p| nan_unless_q(p.kl_teacher_forced)).collect(),
        asr_base,
        asr_aligned,
    }
}

/// Sums per-chunk partials in chunk order (max for the Fisher bound).
fn combine(parts: &[Partial]) -> Partial {
    let mut total = Partial::default();
    for p in parts {
        total.settled += p.settled;
        total.information += p.information;
        total.grad_sq += p.grad_sq;
        total.fisher_max = total.fisher_max.max(p.fisher_max);
        total.asr_base += p.asr_base;
        total.asr_aligned += p.asr_aligned;
        total.kl_teacher_forced += p.kl_teacher_forced;
        total.kl_on_policy += p.kl_on_policy;
    }
    total
}

/// Accumulates state s's contribution at position t (p = p_{t−1}): settled mass, ASR_{t−1} of both
/// policies on Q, I_t, ||G_t||², F̄_t under the base, and KL(π*_t(·|s) ‖ base) weighted by Q
/// (teacher-forced) and by the Gibbs policy's own p*_{t−1} (on-policy).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn layer_stats<const FAST: bool>(model: &Model, s: usize, m: Mass, cell: Cell, later: &[Cell], mass: f64, has_q: bool, acc: &mut Partial) {
    let (p, ps) = (m.p, m.ps);
    let h_prev = cell.h;
    if is_settled(h_prev) {
        acc.settled += p;
    }
    let mut q = 0.0;
    if has_q {
        q = p * h_prev / mass;
        acc.asr_base += q * h_prev;
        acc.asr_aligned += q * cell.hs;
    }
    if !model.live[s] || (p == 0.0 && ps == 0.0) {
        return;
    }
    let row = model.base_row(s);
    let next = model.next_row(s);
    let (mut var, mut sq, mut purity, mut kl) = (0.0, 0.0, 0.0, 0.0);
    let inv_z = 1.0 / cell.z;
    for (&pi, &nx) in row.iter().zip(next) {
        let c = &later[nx as usize];
        let delta = c.h - h_prev;
        var += pi * delta * delta;
        sq += pi * pi * delta * delta;
        purity += pi * pi;
        // π*_t(a|s)/p(a|s) = exp(W_{t−1}(s) − W_t(s·a)) = Z_t(s·a)/Z_{t−1}(s).
        let log_ratio = cell.w - c.w;
        if FAST {
            kl += pi * (c.z * inv_z) * log_ratio;
        } else if pi > 0.0 {
            kl += pi * log_ratio.exp() * log_ratio;
        }
    }
    if p > 0.0 {
        acc.information += p * var;
        acc.grad_sq += p * p * sq;
        acc.fisher_max = acc.fisher_max.max(1.0 - purity);
    }
    if q > 0.0 {
        acc.kl_teacher_forced += q * kl;
    }
    if ps > 0.0 {
        acc.kl_on_policy += ps * kl;
    }
}
