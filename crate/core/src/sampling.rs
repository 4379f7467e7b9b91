//! Batched sampling of responses under a policy, reproducible whatever the thread count.
//!
//! The token at position t of response n is drawn with the uniform of key (n, t, stream 0), so a
//! response does not depend on how responses are split across threads or batches. Forced prefixes
//! (prefilling attacks) replace the first k draws by given tokens.

use crate::error::{Error, Result};
use crate::parallel::map_chunks_of;
use crate::policy::{Policy, RowCache};
use crate::rng::{draw_index, uniforms, DrawKey};
use crate::walk::{Track, Walk, NO_STATE, NO_TOKEN};

/// A policy that can be sampled: its next-token distribution given a walk.
pub trait StepPolicy: Sync {
    /// Length of the scratch buffer `probs` needs.
    fn scratch_len(&self) -> usize {
        0
    }
    /// Whether the policy needs the exact state index (then sampling needs an exact model).
    fn needs_exact_state(&self) -> bool {
        false
    }
    /// π(· | prefix) for the token at position walk.emitted() + 1, into `out` (length V).
    fn probs(&self, walk: &Walk, out: &mut [f64], scratch: &mut [f64]);

    /// KL(π(·|prefix) ‖ base(·|prefix)); `row` and `scratch` are work space. Policies that cache
    /// their rows' KL override this.
    fn kl_to_base(&self, track: &Track, walk: &Walk, row: &mut [f64], scratch: &mut [f64]) -> f64 {
        self.probs(walk, row, scratch);
        crate::policy::kl_divergence(row, track.spec.base_row(walk.context))
    }

    /// Precomputed rows per (position, exact state), for policies defined on exact states that
    /// keep them: sampling, KL and gradients then read them by state instead of walking.
    fn exact_rows(&self) -> Option<&RowCache> {
        None
    }
}

/// The base model, which needs only the context.
pub struct BaseStep<'a> {
    pub spec: &'a crate::model::ScenarioSpec,
}

impl StepPolicy for BaseStep<'_> {
    fn probs(&self, walk: &Walk, out: &mut [f64], _scratch: &mut [f64]) {
        out.copy_from_slice(self.spec.base_row(walk.context));
    }
    fn kl_to_base(&self, _track: &Track, _walk: &Walk, _row: &mut [f64], _scratch: &mut [f64]) -> f64 {
        0.0
    }
}

/// Any exact-engine policy (tabular, Gibbs) sampled through the exact state index.
pub struct ExactStep<'a, P: Policy + ?Sized>(pub &'a P);

impl<P: Policy + ?Sized> StepPolicy for ExactStep<'_, P> {
    fn needs_exact_state(&self) -> bool {
        true
    }
    fn probs(&self, walk: &Walk, out: &mut [f64], _scratch: &mut [f64]) {
        self.0.probs(walk.emitted() + 1, walk.state as usize, out);
    }
    fn kl_to_base(&self, track: &Track, walk: &Walk, row: &mut [f64], _scratch: &mut [f64]) -> f64 {
        // Exact policies are only sampled with their model (check_request).
        let model = track.model.expect("an exact-state policy walks with its model");
        self.0.kl_to_base(model, walk.emitted() + 1, walk.state as usize, row)
    }
    fn exact_rows(&self) -> Option<&RowCache> {
        self.0.row_cache()
    }
}

/// Forced first tokens: one prefix shared by every response, or one per response.
#[derive(Clone, Copy)]
pub struct Prefix<'a> {
    pub tokens: &'a [u32],
    pub length: usize,
}

impl Prefix<'_> {
    pub(crate) fn token(&self, response: usize, position: usize) -> Option<u32> {
        if position >= self.length {
            return None;
        }
        let shared = self.tokens.len() == self.length;
        let at = if shared { position } else { response * self.length + position };
        self.tokens.get(at).copied().filter(|&a| a != NO_TOKEN)
    }
}

/// N sampled responses. Per-position arrays are N × T (row n = response n).
#[derive(Debug, Clone)]
pub struct Samples {
    pub count: usize,
    /// RNG index of the first response (response n uses index first_index + n).
    pub first_index: u32,
    pub length: usize,
    /// Token ids, NO_TOKEN after the response ended.
    pub tokens: Vec<u32>,
    /// log π(y_t | y_<t) (0 after the end).
    pub log_probs: Vec<f64>,
    pub harm: Vec<f64>,
    /// Number of tokens emitted.
    pub emitted: Vec<u32>,
    /// Exact state after t tokens, N × (T+1), when sampled with an exact model.
    pub states: Option<Vec<u32>>,
}

pub struct SampleRequest<'a> {
    pub count: usize,
    pub seed: u64,
    pub prefix: Option<Prefix<'a>>,
    /// Offset added to response indices in the RNG key: batch b of size N uses offset b·N, so
    /// sampling in batches reproduces one large sample.
    pub first_index: u32,
}

const RESPONSES_PER_CHUNK: usize = 64;

/// Checks that a policy can be sampled on this track and a prefix fits.
pub fn check_request(track: &Track, policy: &dyn StepPolicy, request: &SampleRequest) -> Result<()> {
    if policy.needs_exact_state() && track.model.is_none() {
        return Err(Error::InvalidArgument("this policy is defined on exact states: sampling it needs the exact model".into()));
    }
    if request.count == 0 {
        return Err(Error::InvalidArgument("the number of samples must be at least 1".into()));
    }
    // The samples' tokens, log-probabilities and states (N × (T+1) of 16 bytes at most), which are
    // assembled from chunks: twice that must be available before the first chunk is drawn.
    crate::alloc::check_reservable::<[u32; 4]>(&[2, request.count, track.spec.length + 1], "sample buffers (samples × (T+1))")?;
    if (request.first_index as u64 + request.count as u64) > u32::MAX as u64 {
        return Err(Error::InvalidArgument("at most 2^32 − 1 responses per seed".into()));
    }
    if let Some(p) = request.prefix {
        if p.length > track.spec.length {
            return Err(Error::InvalidArgument(format!("prefix length {} exceeds T = {}", p.length, track.spec.length)));
        }
        if p.tokens.len() != p.length && p.tokens.len() != p.length * request.count {
            return Err(Error::InvalidArgument(format!(
                "prefix tokens: {} entries, expected k = {} (shared) or N·k = {}",
                p.tokens.len(),
                p.length,
                p.length * request.count
            )));
        }
        if let Some(&a) = p.tokens.iter().find(|&&a| a != NO_TOKEN && a as usize >= track.spec.vocab) {
            return Err(Error::InvalidArgument(format!("prefix token {a} is not below V = {}", track.spec.vocab)));
        }
    }
    Ok(())
}

/// Draws (or forces) the next token of a walk; returns it with its log-probability.
pub fn step(track: &Track, policy: &dyn StepPolicy, walk: &mut Walk, key: DrawKey, seed: u64, forced: Option<u32>, row: &mut [f64], scratch: &mut [f64]) -> (usize, f64) {
    policy.probs(walk, row, scratch);
    let token = match forced {
        Some(a) => a as usize,
        None => draw_index(row, uniforms(seed, key)[0]),
    };
    let log_prob = row[token].ln();
    track.advance(walk, token);
    (token, log_prob)
}

pub fn sample(track: &Track, policy: &dyn StepPolicy, request: &SampleRequest) -> Result<Samples> {
    check_request(track, policy, request)?;
    if let (Some(model), Some(rows)) = (track.model, policy.exact_rows()) {
        if track.spec.length > 0 {
            return Ok(crate::row_sampler::sample_rows(model, rows, request));
        }
    }
    let (n, t_max, v) = (request.count, track.spec.length, track.spec.vocab);
    let with_states = track.model.is_some();
    let chunks = map_chunks_of(n, RESPONSES_PER_CHUNK, |range| {
        let mut out = Samples {
            count: range.len(),
            first_index: request.first_index + range.start as u32,
            length: t_max,
            tokens: vec![NO_TOKEN; range.len() * t_max],
            log_probs: vec![0.0; range.len() * t_max],
            harm: vec![0.0; range.len()],
            emitted: vec![0; range.len()],
            states: with_states.then(|| vec![NO_STATE; range.len() * (t_max + 1)]),
        };
        let mut walk = track.start();
        let mut row = vec![0.0; v];
        let mut scratch = vec![0.0; policy.scratch_len()];
        for (i, response) in range.enumerate() {
            track.reset(&mut walk);
            let index = request.first_index + response as u32;
            for t in 0..=t_max {
                if let Some(states) = out.states.as_mut() {
                    states[i * (t_max + 1) + t] = walk.state;
                }
                if track.finished(&walk) {
                    // A finished response stays in its (sink) state for the remaining positions.
                    if let Some(states) = out.states.as_mut() {
                        states[i * (t_max + 1) + t..(i + 1) * (t_max + 1)].fill(walk.state);
                    }
                    break;
                }
                let key = DrawKey { index, position: t as u32 + 1, stream: 0, substream: 0 };
                let forced = request.prefix.and_then(|p| p.token(response, t));
                let (token, log_prob) = step(track, policy, &mut walk, key, request.seed, forced, &mut row, &mut scratch);
                out.tokens[i * t_max + t] = token as u32;
                out.log_probs[i * t_max + t] = log_prob;
            }
            out.harm[i] = track.harm(&walk);
            out.emitted[i] = walk.emitted() as u32;
        }
        out
    });
    let mut all = concat(chunks, t_max);
    all.first_index = request.first_index;
    Ok(all)
}

/// Parts sampled separately (chunks, mixture components), end to end; states kept when the first part has them.
pub(crate) fn concat(parts: Vec<Samples>, length: usize) -> Samples {
    let mut all = Samples {
        count: 0,
        first_index: 0,
        length,
        tokens: vec![],
        log_probs: vec![],
        harm: vec![],
        emitted: vec![],
        states: parts.first().and_then(|p| p.states.as_ref()).map(|_| vec![]),
    };
    for p in parts {
        all.count += p.count;
        all.tokens.extend(p.tokens);
        all.log_probs.extend(p.log_probs);
        all.harm.extend(p.harm);
        all.emitted.extend(p.emitted);
        if let (Some(a), Some(b)) = (all.states.as_mut(), p.states) {
            a.extend(b);
        }
    }
    all
}

/// Replays every sampled response and maps each emitted token, N × T values (`T::default()` after
/// the end): `f(state, walk, token)` sees the walk before the token. Responses are replayed in
/// fixed chunks in parallel; `state` is per-chunk scratch made by `make_state`.
pub fn map_tokens<T, S, M, F>(track: &Track, samples: &Samples, make_state: M, f: F) -> Vec<T>
where
    T: Default + Clone + Send,
    M: Fn() -> S + Sync,
    F: Fn(&mut S, &Walk, usize) -> T + Sync,
{
    let t_max = samples.length;
    map_chunks_of(samples.count, RESPONSES_PER_CHUNK, |range| {
        let mut out = vec![T::default(); range.len() * t_max];
        let mut walk = track.start();
        let mut state = make_state();
        for (i, n) in range.enumerate() {
            track.reset(&mut walk);
            for t in 0..t_max {
                let token = samples.tokens[n * t_max + t];
                if token == NO_TOKEN {
                    break;
                }
                out[i * t_max + t] = f(&mut state, &walk, token as usize);
                track.advance(&mut walk, token as usize);
            }
        }
        out
    })
    .concat()
}
