//! This machine's limits for the benchmarks' fractions, measured on every thread of the current
//! rayon pool: the Philox draw rate (the sampler's one block per token) and the rate of random 8-byte
//! reads from a table of a given size (the exact engine's gathers, the sampler's row lookups).

use rayon::prelude::*;

use crate::rng::token_uniform;

/// Philox4x32-10 blocks per second, drawn as the sampler draws them (keyed by (index, position), one
/// uniform per block): `count` blocks split evenly over the threads.
pub fn philox_rate(count: u32) -> f64 {
    let threads = rayon::current_num_threads() as u32;
    let start = std::time::Instant::now();
    let sink: f64 = (0..threads)
        .into_par_iter()
        .map(|k| {
            let (from, to) = ((count as u64 * k as u64 / threads as u64) as u32, (count as u64 * (k as u64 + 1) / threads as u64) as u32);
            (from..to).map(|i| token_uniform(7, i, 1)).sum::<f64>()
        })
        .sum();
    let seconds = start.elapsed().as_secs_f64();
    std::hint::black_box(sink);
    count as f64 / seconds
}

/// Random 8-byte reads per second from a table of `bytes` bytes: `count` independent reads (their
/// addresses from a xorshift generator, computed before the clock starts) split over the threads.
pub fn lookup_rate(bytes: usize, count: usize) -> f64 {
    let entries = (bytes / 8).max(1);
    let table: Vec<f64> = (0..entries).map(|i| (i & 1023) as f64).collect();
    let mut x = 88_172_645_463_325_252u64;
    let index: Vec<u32> = (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % entries as u64) as u32
        })
        .collect();
    let threads = rayon::current_num_threads();
    let start = std::time::Instant::now();
    let sink: f64 = index.par_chunks(count.div_ceil(threads).max(1)).map(|part| part.iter().map(|&i| table[i as usize]).sum::<f64>()).sum();
    let seconds = start.elapsed().as_secs_f64();
    std::hint::black_box(sink);
    count as f64 / seconds
}
