//! Deterministic parallel loops over states.
//!
//! Work is split into fixed chunks of CHUNK states whatever the thread count, and per-chunk partial
//! results come back in chunk order, so sums combined in that order are bit-identical for any
//! number of threads.
//!
//! Every chunk starts with a cancellation check (cancel.rs): a cancelled computation skips its
//! remaining chunks and stops at the end of the loop.

use rayon::prelude::*;

use crate::cancel;

pub const CHUNK: usize = 512;

/// Runs `f` on consecutive chunks of 0..n in parallel and returns the results in chunk order.
pub fn map_chunks<R: Send, F>(n: usize, f: F) -> Vec<R>
where
    F: Fn(std::ops::Range<usize>) -> R + Sync,
{
    map_chunks_of(n, CHUNK, f)
}

/// `map_chunks` with chunks of `size` items.
pub fn map_chunks_of<R: Send, F>(n: usize, size: usize, f: F) -> Vec<R>
where
    F: Fn(std::ops::Range<usize>) -> R + Sync,
{
    let flag = cancel::current();
    let raised = || flag.as_ref().is_some_and(cancel::Cancel::is_cancelled);
    // Once the flag is raised the remaining chunks are skipped, and the computation unwinds once,
    // below: unwinding in every chunk would cost microseconds per chunk (seconds for 10^6 chunks).
    let parts: Vec<Option<R>> = (0..n.div_ceil(size))
        .into_par_iter()
        .map(|c| if raised() { None } else { Some(cancel::within(flag.as_ref(), || f(c * size..((c + 1) * size).min(n)))) })
        .collect();
    cancel::stop_if_cancelled(flag.as_ref());
    parts.into_iter().map(|part| part.expect("a chunk is skipped only once the flag is raised")).collect()
}

/// Σ over chunks of a K-vector of partial sums, combined in chunk order.
pub fn sum_chunks<const K: usize, F>(n: usize, f: F) -> [f64; K]
where
    F: Fn(std::ops::Range<usize>) -> [f64; K] + Sync,
{
    let mut total = [0.0; K];
    for part in map_chunks(n, f) {
        for k in 0..K {
            total[k] += part[k];
        }
    }
    total
}

/// Σ_s w[s]·x[s], deterministic.
pub fn dot(w: &[f64], x: &[f64]) -> f64 {
    sum_chunks::<1, _>(w.len(), |r| [r.map(|s| w[s] * x[s]).sum()])[0]
}

/// Threads in the current rayon pool (set RAYON_NUM_THREADS to change the global one).
pub fn thread_count() -> usize {
    rayon::current_num_threads()
}
