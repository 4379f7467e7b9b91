//! Counter-based random numbers: Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as
//! 1, 2, 3", SC 2011).
//!
//! A draw is a pure function of (seed, counter). Sampling keys the counter by (response index,
//! position, stream, substream), so the same seed gives the same samples whatever the thread count
//! or the way responses are split into batches. The TypeScript reference implements the same
//! function (ts/reference/philox.ts) and draws identical numbers.

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// The Philox4x32-10 block function.
pub fn philox4x32(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut c, mut k) = (counter, key);
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        let p0 = M0 as u64 * c[0] as u64;
        let p1 = M1 as u64 * c[2] as u64;
        c = [(p1 >> 32) as u32 ^ c[1] ^ k[0], p1 as u32, (p0 >> 32) as u32 ^ c[3] ^ k[1], p0 as u32];
    }
    c
}

/// A uniform in [0, 1) with 53 random bits from two 32-bit words.
pub fn to_unit(hi: u32, lo: u32) -> f64 {
    (((hi >> 5) as u64) << 26 | (lo >> 6) as u64) as f64 * (1.0 / 9_007_199_254_740_992.0)
}

/// Where a draw sits: which response, which position, and which stream (the response itself,
/// or one of its rollouts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrawKey {
    pub index: u32,
    pub position: u32,
    pub stream: u32,
    pub substream: u32,
}

/// Two independent uniforms for a key.
pub fn uniforms(seed: u64, key: DrawKey) -> [f64; 2] {
    let w = philox4x32([key.index, key.position, key.stream, key.substream], [seed as u32, (seed >> 32) as u32]);
    [to_unit(w[0], w[1]), to_unit(w[2], w[3])]
}

/// Inverse-CDF draw of an index from unnormalised non-negative weights. Zero-weight entries are
/// never drawn; rounding at the top end falls back to the last positive entry.
pub fn draw_index(weights: &[f64], u: f64) -> usize {
    let total: f64 = weights.iter().sum();
    let target = u * total;
    let mut acc = 0.0;
    let mut last = 0;
    for (i, &w) in weights.iter().enumerate() {
        if w > 0.0 {
            acc += w;
            last = i;
            if target < acc {
                return i;
            }
        }
    }
    last
}

/// The draw of `draw_index` from a row's running sums (cdf(i) = w_0 + … + w_i, added in token order
/// as draw_index adds them, read from entry i of `row` by `cdf`), by binary search: the first i with
/// u·total < cdf(i). Zero-weight entries repeat the sum before them, so they are never drawn;
/// rounding at the top end falls back to the last positive entry. Bit for bit draw_index's token.
#[inline]
pub fn draw_from_cdf<E>(row: &[E], cdf: impl Fn(&E) -> f64 + Copy, u: f64) -> usize {
    draw_from_cdfs(&[row], cdf, &[u])[0]
}

/// `draw_from_cdf` in G rows of one length at once, with the G searches' steps interleaved: each
/// search is a chain of dependent loads, and interleaving keeps G of them in flight together.
#[inline]
pub fn draw_from_cdfs<E, const G: usize>(rows: &[&[E]; G], cdf: impl Fn(&E) -> f64 + Copy, u: &[f64; G]) -> [usize; G] {
    let v = rows[0].len();
    assert!(v > 0 && rows.iter().all(|row| row.len() == v), "rows of one positive length");
    let target: [f64; G] = std::array::from_fn(|k| u[k] * cdf(&rows[k][v - 1]));
    let (mut lo, mut len) = ([0; G], v);
    while len > 1 {
        let half = len / 2;
        for k in 0..G {
            // SAFETY: lo + half − 1 < lo + len ≤ v, the length of every row (asserted above); the
            // bounds check is on the sampler's hottest path and LLVM cannot prove it away.
            let entry = unsafe { rows[k].get_unchecked(lo[k] + half - 1) };
            // A conditional move, not a jump: the comparison is a coin flip for the predictor, and
            // a mispredicted jump per step costs more than the search itself (LLVM turns a plain
            // select or a multiply by the comparison back into a jump inside loops).
            lo[k] = core::hint::select_unpredictable(cdf(entry) <= target[k], lo[k] + half, lo[k]);
        }
        len -= half;
    }
    std::array::from_fn(|k| {
        let row = rows[k];
        if target[k] < cdf(&row[lo[k]]) {
            return lo[k];
        }
        (0..v).rev().find(|&i| cdf(&row[i]) > if i == 0 { 0.0 } else { cdf(&row[i - 1]) }).unwrap_or(0)
    })
}

/// The uniform of a token draw: the first of `uniforms(seed, key)`.
#[inline]
pub fn token_uniform(seed: u64, index: u32, position: u32) -> f64 {
    let w = philox4x32([index, position, 0, 0], [seed as u32, (seed >> 32) as u32]);
    to_unit(w[0], w[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known-answer vectors of Random123 (kat_vectors, philox4x32 10 rounds).
    #[test]
    fn philox_matches_the_published_vectors() {
        assert_eq!(philox4x32([0, 0, 0, 0], [0, 0]), [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]);
        assert_eq!(philox4x32([u32::MAX; 4], [u32::MAX; 2]), [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]);
        assert_eq!(
            philox4x32([0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344], [0xa409_3822, 0x299f_31d0]),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }

    #[test]
    fn uniforms_are_in_range_and_draws_follow_weights() {
        let mut counts = [0usize; 3];
        for i in 0..30_000 {
            let [u, v] = uniforms(7, DrawKey { index: i, position: 0, stream: 0, substream: 0 });
            assert!((0.0..1.0).contains(&u) && (0.0..1.0).contains(&v));
            counts[draw_index(&[0.2, 0.0, 0.8], u)] += 1;
        }
        assert_eq!(counts[1], 0);
        assert!((counts[0] as f64 / 30_000.0 - 0.2).abs() < 0.01, "{counts:?}");
    }

    #[test]
    fn binary_search_on_running_sums_draws_what_draw_index_draws() {
        let rows: [&[f64]; 4] = [&[0.2, 0.0, 0.8], &[0.0, 0.0, 1e-300, 0.0], &[0.1; 7], &[0.0, 0.5, 0.0, 0.25, 0.25, 0.0]];
        for row in rows {
            let mut acc = 0.0;
            let cdf: Vec<f64> = row.iter().map(|w| {
                acc += w;
                acc
            }).collect();
            for i in 0..20_000 {
                let u = uniforms(3, DrawKey { index: i, position: 1, stream: 0, substream: 0 })[0];
                assert_eq!(draw_from_cdf(&cdf, |&c| c, u), draw_index(row, u), "{row:?} u = {u}");
                let v = 1.0 - u;
                assert_eq!(draw_from_cdfs(&[&cdf[..], &cdf[..]], |&c| c, &[u, v]), [draw_index(row, u), draw_index(row, v)], "{row:?} u = {u}");
                assert_eq!(token_uniform(3, i, 1), u);
            }
            // The top end: u so close to 1 that u·total rounds to total.
            let top = 1.0 - f64::EPSILON / 2.0;
            assert_eq!(draw_from_cdf(&cdf, |&c| c, top), draw_index(row, top), "{row:?} at the top");
        }
    }
}
