//! Zeroed buffers for large outputs, backed by huge pages where the system offers them.
//!
//! A sampling call returns tens of megabytes of fresh memory (the caller owns it, so it cannot be
//! reused). Touched 4 KB at a time, each page is a fault into the kernel: at 65 536 × 64 tokens,
//! about 16 000 faults and a tenth of the call. Linux backs a range with 2 MB pages when asked
//! (`madvise(MADV_HUGEPAGE)`, honoured when transparent huge pages are in "madvise" or "always"
//! mode); elsewhere the buffer is an ordinary one.

/// Buffers smaller than this stay ordinary (a huge page would mostly be padding).
const HUGE_FROM_BYTES: usize = 4 << 20;

/// `vec![T::default(); len]` for plain numbers, asking for huge pages when it is large.
pub fn zeroed<T: Copy + Default>(len: usize) -> Vec<T> {
    let buffer = vec![T::default(); len];
    advise_huge_pages(&buffer);
    buffer
}

#[cfg(target_os = "linux")]
fn advise_huge_pages<T>(buffer: &[T]) {
    let bytes = std::mem::size_of_val(buffer);
    if bytes < HUGE_FROM_BYTES {
        return;
    }
    // Only whole 2 MB pages inside the buffer can be huge: advise the aligned middle.
    const HUGE: usize = 2 << 20;
    let start = buffer.as_ptr() as usize;
    let (from, to) = (start.next_multiple_of(HUGE), (start + bytes) / HUGE * HUGE);
    if from < to {
        // SAFETY: the range lies inside the live allocation `buffer`; the advice changes how its
        // pages are backed, never their contents (still zero), and a refusal is harmless.
        unsafe { libc::madvise(from as *mut libc::c_void, to - from, libc::MADV_HUGEPAGE) };
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages<T>(_buffer: &[T]) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_zero_whatever_their_size() {
        for len in [0, 1, 1000, (HUGE_FROM_BYTES / 8) + 12_345, 3 * HUGE_FROM_BYTES / 4] {
            let buffer = zeroed::<f64>(len);
            assert_eq!(buffer.len(), len);
            assert!(buffer.iter().all(|&x| x.to_bits() == 0), "len {len}");
            let words = zeroed::<u32>(len);
            assert!(words.len() == len && words.iter().all(|&x| x == 0), "len {len}");
        }
    }
}
