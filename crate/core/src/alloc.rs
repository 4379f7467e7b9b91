//! Checked allocation: every buffer whose size follows from user input (states, samples, rollouts,
//! positions) is sized with overflow checks and reserved fallibly, so an impossible size becomes a
//! coded error (`HH_OUT_OF_MEMORY`) instead of an abort of the whole process.

use crate::error::{Error, Result};

/// The product of `dims` elements of `T`, or an error naming `what` when the count or its bytes overflow.
pub fn checked_len<T>(dims: &[usize], what: &str) -> Result<usize> {
    let len = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    match len {
        Some(len) if len.checked_mul(std::mem::size_of::<T>()).is_some_and(|b| b <= isize::MAX as usize) => Ok(len),
        _ => Err(Error::OutOfMemory { what: what.to_string(), bytes: f64::INFINITY }),
    }
}

/// A vector of `len` copies of `value`, reserved fallibly.
pub fn filled<T: Clone>(len: usize, value: T, what: &str) -> Result<Vec<T>> {
    let bytes = len as f64 * std::mem::size_of::<T>() as f64;
    let mut out = Vec::new();
    out.try_reserve_exact(len).map_err(|_| Error::OutOfMemory { what: what.to_string(), bytes })?;
    out.resize(len, value);
    Ok(out)
}

/// A table of dims[0]·dims[1]·… copies of `value`: `checked_len` then `filled`.
pub fn table<T: Clone>(dims: &[usize], value: T, what: &str) -> Result<Vec<T>> {
    filled(checked_len::<T>(dims, what)?, value, what)
}

/// Checks that `len` elements of `T` could be allocated now (reserved, then released): for a
/// result assembled in pieces whose total size is known before the first piece is made.
pub fn check_reservable<T>(dims: &[usize], what: &str) -> Result<()> {
    let len = checked_len::<T>(dims, what)?;
    let mut probe: Vec<T> = Vec::new();
    let reserved = probe.try_reserve_exact(len);
    // The probe is never used, and an optimised build may elide an unused allocation (reporting
    // success for any size): letting its pointer escape keeps the reservation real.
    std::hint::black_box(probe.as_ptr());
    reserved.map_err(|_| Error::OutOfMemory { what: what.to_string(), bytes: len as f64 * std::mem::size_of::<T>() as f64 })
}

/// Grows `vec` by room for `additional` more elements, fallibly (growth doubles as `push` would).
pub fn grow<T>(vec: &mut Vec<T>, additional: usize, what: &str) -> Result<()> {
    vec.try_reserve(additional).map_err(|_| Error::OutOfMemory { what: what.to_string(), bytes: ((vec.len() + additional) * std::mem::size_of::<T>()) as f64 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflowing_sizes_are_errors() {
        let e = table::<f64>(&[usize::MAX / 2, 3], 0.0, "huge").unwrap_err();
        assert_eq!(e.code(), "HH_OUT_OF_MEMORY");
        assert!(e.to_string().contains("huge"));
        assert!(checked_len::<f64>(&[1 << 40, 1 << 30], "x").is_err());
        assert!(checked_len::<u8>(&[usize::MAX], "x").is_err());
    }

    #[test]
    fn impossible_reservations_are_errors_not_aborts() {
        // 2^61 bytes fits isize but no machine: the fallible reservation must fail cleanly.
        let e = filled::<u8>(1usize << 61, 0, "buffer").unwrap_err();
        assert_eq!(e.code(), "HH_OUT_OF_MEMORY");
    }

    #[test]
    fn ordinary_sizes_are_allocated_and_filled() {
        let v = table(&[3, 4, 5], 1.5f64, "t").unwrap();
        assert_eq!(v.len(), 60);
        assert!(v.iter().all(|&x| x == 1.5));
        assert_eq!(table::<u32>(&[0, 7], 0, "empty").unwrap().len(), 0);
    }

    #[test]
    fn reservations_are_probed_and_growth_is_fallible() {
        assert!(check_reservable::<f64>(&[1000, 1000], "t").is_ok());
        assert_eq!(check_reservable::<u64>(&[1 << 30, 1 << 27], "t").unwrap_err().code(), "HH_OUT_OF_MEMORY");
        let mut v = vec![1u8];
        grow(&mut v, 10, "v").unwrap();
        assert!(v.capacity() >= 11);
        assert_eq!(grow(&mut v, 1usize << 61, "v").unwrap_err().code(), "HH_OUT_OF_MEMORY");
    }
}
