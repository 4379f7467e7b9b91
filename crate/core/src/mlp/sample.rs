//! Sampling an mlp policy from its draw table, without copying a row per token.
//!
//! `sampling::sample` asks the policy for each token's row (a 256-byte copy out of a table of
//! tens of MB, which misses the cache) and scans it. Here the walks of a chunk advance one
//! position at a time, so that position's slice of the table stays in cache, and each token is a
//! binary search in its row's running sums, read in place (`rng::draw_from_cdfs`). The draws are
//! keyed by (response, position) as in `sampling::sample`, so the tokens, log-probabilities,
//! harms and states are those of `sampling::sample`, bit for bit, whatever the chunking.

use rayon::prelude::*;

use super::MlpPolicy;
use crate::error::Result;
use crate::rng::{draw_from_cdfs, token_uniform};
use crate::sampling::{check_request, sample, SampleRequest, Samples};
use crate::walk::{Track, NO_STATE, NO_TOKEN};

/// Fewest responses per chunk: a chunk's walks share each position's table slice while it sits in
/// cache, so chunks are as large as the thread count allows (one per thread).
const MIN_RESPONSES_PER_CHUNK: usize = 1024;

/// Walks whose binary searches run interleaved (each search is a chain of dependent loads).
const LANES: usize = 8;

impl MlpPolicy<'_> {
    /// `sampling::sample` with this policy (same results); in place on the draw table when it is
    /// built and no prefix is forced, else through `sampling::sample`.
    pub fn sample(&self, track: &Track, request: &SampleRequest) -> Result<Samples> {
        check_request(track, self, request)?;
        match &self.cache {
            Some(table) if request.prefix.is_none() && track.spec.length > 0 && self.fits(track) => Ok(self.sample_in_place(track, table, request)),
            _ => sample(track, self, request),
        }
    }

    /// Whether the network was built for the track's V and T (else `sampling::sample` reports it).
    fn fits(&self, track: &Track) -> bool {
        self.mlp.config.vocab == track.spec.vocab && self.mlp.config.length == track.spec.length
    }

    fn sample_in_place(&self, track: &Track, table: &[[f64; 2]], request: &SampleRequest) -> Samples {
        let spec = track.spec;
        let (n, t_max, v, contexts) = (request.count, spec.length, spec.vocab, self.mlp.num_contexts());
        let v1 = v + 1;
        let stride = t_max + 1;
        let mut tokens = vec![NO_TOKEN; n * t_max];
        let mut log_probs = vec![0.0; n * t_max];
        let mut states = track.model.map(|_| vec![NO_STATE; n * stride]);
        let mut harm = vec![0.0; n];
        let mut emitted = vec![0u32; n];
        let size = n.div_ceil(rayon::current_num_threads()).max(MIN_RESPONSES_PER_CHUNK);
        let mut state_chunks: Vec<Option<&mut [u32]>> = match states.as_mut() {
            Some(s) => s.chunks_mut(size * stride).map(Some).collect(),
            None => (0..n.div_ceil(size)).map(|_| None).collect(),
        };
        let outputs = tokens.par_chunks_mut(size * t_max).zip(log_probs.par_chunks_mut(size * t_max)).zip(state_chunks.par_iter_mut());
        let ends = harm.par_chunks_mut(size).zip(emitted.par_chunks_mut(size));
        let flag = crate::cancel::current();
        outputs.zip(ends).enumerate().for_each(|(chunk, (((tokens, log_probs), states), (harm, emitted)))| {
            let first = request.first_index + (chunk * size) as u32;
            let count = harm.len();
            // Each walk's mlp context, automaton state and exact state (when a model is given).
            let mut context = vec![(contexts - 1) as u32; count];
            let mut automaton = vec![spec.start as u32; count];
            let mut exact = vec![0u32; count];
            // Walks still emitting, in response order.
            let mut active: Vec<u32> = (0..count as u32).collect();
            for t in 0..t_max {
                crate::cancel::stop_if_cancelled(flag.as_ref());
                let slice = &table[t * contexts * v..(t + 1) * contexts * v];
                let mut kept = 0;
                for group in (0..active.len()).step_by(LANES) {
                    // The group's walks (the last group padded with its first walk, whose draw is
                    // then made twice and used once).
                    let walks: [usize; LANES] = std::array::from_fn(|k| active.get(group + k).copied().unwrap_or(active[group]) as usize);
                    let u: [f64; LANES] = std::array::from_fn(|k| token_uniform(request.seed, first + walks[k] as u32, t as u32 + 1));
                    let rows = walks.map(|i| &slice[context[i] as usize * v..][..v]);
                    let drawn = draw_from_cdfs(&rows, |e| e[0], &u);
                    for k in 0..(active.len() - group).min(LANES) {
                        let (i, a) = (walks[k], drawn[k]);
                        tokens[i * t_max + t] = a as u32;
                        log_probs[i * t_max + t] = rows[k][a][1].ln();
                        if let (Some(states), Some(model)) = (states.as_deref_mut(), track.model) {
                            states[i * stride + t] = exact[i];
                            exact[i] = model.next_row(exact[i] as usize)[a];
                        }
                        context[i] = ((context[i] as usize * v1 + a) % contexts) as u32;
                        automaton[i] = spec.transitions[automaton[i] as usize * v + a];
                        if spec.end_token == Some(a) {
                            // Ended: the state after the end token for the remaining positions.
                            emitted[i] = t as u32 + 1;
                            if let Some(states) = states.as_deref_mut() {
                                states[i * stride + t + 1..(i + 1) * stride].fill(exact[i]);
                            }
                        } else {
                            active[kept] = i as u32;
                            kept += 1;
                        }
                    }
                }
                active.truncate(kept);
            }
            for &i in &active {
                emitted[i as usize] = t_max as u32;
                if let Some(states) = states.as_deref_mut() {
                    states[i as usize * stride + t_max] = exact[i as usize];
                }
            }
            for (h, &s) in harm.iter_mut().zip(&automaton) {
                *h = spec.harm[s as usize];
            }
        });
        Samples { count: n, first_index: request.first_index, length: t_max, tokens, log_probs, harm, emitted, states }
    }
}
