//! Cooperative cancellation of long computations.
//!
//! A `Cancel` is a flag the caller raises from another thread (the binding raises it when a
//! JavaScript AbortSignal fires). `run` makes it the current flag of a computation; the long loops
//! look at it at their chunk boundaries: `parallel::map_chunks*` before every chunk, the
//! per-position loops through `checkpoint()`. Those loops return plain values rather than
//! `Result`s, so a raised flag unwinds the computation with the private `Aborted` payload
//! (`resume_unwind`, which runs no panic hook and prints nothing); `run` catches exactly that
//! payload and returns `Error::Aborted`. Everything the loops were writing is scratch owned by
//! the computation, so nothing outside it is left half-updated. Loops that already return a
//! `Result` can use `check()?` instead.
//!
//! The current flag is thread-local: `map_chunks*` hands it on to the pool threads that run its
//! chunks, so two computations running at once each see their own flag.

use std::cell::RefCell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};

/// A cancellation flag shared between the computation and whoever may cancel it.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn new() -> Self {
        Cancel::default()
    }

    /// Asks the computations watching this flag to stop at their next check.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// `Err(Error::Aborted)` once the flag is raised.
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::Aborted)
        } else {
            Ok(())
        }
    }
}

/// The unwind payload of a cancelled computation (caught by `run` only).
struct Aborted;

thread_local! {
    static CURRENT: RefCell<Option<Cancel>> = const { RefCell::new(None) };
}

/// The flag of the computation running on this thread, if it has one.
pub fn current() -> Option<Cancel> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Runs `f` with `cancel` as this thread's current flag (none: not cancellable), restoring the
/// previous one afterwards, even when `f` unwinds. A pool thread may run a chunk of another
/// computation while it waits inside one of its own, so every chunk sets its flag, `None` included.
pub fn within<R>(cancel: Option<&Cancel>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Cancel>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|c| *c.borrow_mut() = self.0.take());
        }
    }
    let _restore = Restore(CURRENT.with(|c| c.replace(cancel.cloned())));
    checkpoint();
    f()
}

/// Stops the current computation if its flag is raised (unwinds to `run`).
pub fn checkpoint() {
    let cancelled = CURRENT.with(|c| c.borrow().as_ref().is_some_and(Cancel::is_cancelled));
    if cancelled {
        resume_unwind(Box::new(Aborted));
    }
}

/// `checkpoint` for a flag taken with `current()` before a parallel loop that does not go
/// through `map_chunks*` (its pool threads do not carry the flag themselves).
pub fn stop_if_cancelled(flag: Option<&Cancel>) {
    if flag.is_some_and(Cancel::is_cancelled) {
        resume_unwind(Box::new(Aborted));
    }
}

/// Runs a computation that `cancel` can stop: `Err(Error::Aborted)` when it was stopped (already
/// raised before the start included). Other panics go on unwinding to the caller.
pub fn run<R>(cancel: Option<&Cancel>, f: impl FnOnce() -> Result<R>) -> Result<R> {
    if let Some(c) = cancel {
        c.check()?;
    }
    match catch_unwind(AssertUnwindSafe(|| within(cancel, f))) {
        Ok(result) => result,
        Err(payload) if payload.is::<Aborted>() => Err(Error::Aborted),
        Err(payload) => resume_unwind(payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallel::{map_chunks, sum_chunks};
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn a_raised_flag_fails_check() {
        let c = Cancel::new();
        assert_eq!(c.check(), Ok(()));
        c.cancel();
        assert_eq!(c.check(), Err(Error::Aborted));
        assert_eq!(Error::Aborted.code(), "HH_ABORTED");
    }

    #[test]
    fn a_flag_raised_before_the_start_runs_nothing() {
        let c = Cancel::new();
        c.cancel();
        let ran = AtomicUsize::new(0);
        let out = run(Some(&c), || Ok(map_chunks(10_000, |_| ran.fetch_add(1, Ordering::Relaxed))));
        assert_eq!(out, Err(Error::Aborted));
        assert_eq!(ran.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_flag_raised_mid_run_stops_the_remaining_chunks() {
        let c = Cancel::new();
        let ran = AtomicUsize::new(0);
        // Sequential chunk loops: the flag is raised in the 3rd chunk of the first loop.
        let out = run(Some(&c), || {
            for _ in 0..100 {
                sum_chunks::<1, _>(1 << 20, |r| {
                    if ran.fetch_add(1, Ordering::Relaxed) == 2 {
                        c.cancel();
                    }
                    [r.len() as f64]
                });
            }
            Ok(())
        });
        assert_eq!(out, Err(Error::Aborted));
        // 2048 chunks per loop, 100 loops: the run stopped within the first loop.
        assert!(ran.load(Ordering::Relaxed) < 2048, "ran {} chunks", ran.load(Ordering::Relaxed));
        assert!(current().is_none(), "the caller's flag is restored");
    }

    #[test]
    fn a_checkpoint_in_a_sequential_loop_stops_it() {
        let c = Cancel::new();
        let mut steps = 0;
        let out: Result<()> = run(Some(&c), || {
            loop {
                checkpoint();
                steps += 1;
                if steps == 5 {
                    c.cancel();
                }
            }
        });
        assert_eq!(out, Err(Error::Aborted));
        assert_eq!(steps, 5);
    }

    #[test]
    fn an_unraised_flag_changes_no_result() {
        let c = Cancel::new();
        let f = || sum_chunks::<2, _>(100_000, |r| [r.clone().map(|i| (i as f64).sqrt()).sum(), r.len() as f64]);
        assert_eq!(run(Some(&c), || Ok(f())), Ok(f()));
        assert_eq!(run(None, || Ok(f())), Ok(f()));
    }

    #[test]
    fn other_panics_still_unwind() {
        let out = catch_unwind(|| run(Some(&Cancel::new()), || -> Result<()> { panic!("a bug") }));
        let payload = out.expect_err("the panic reaches the caller");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"a bug"));
        assert!(current().is_none());
    }

    #[test]
    fn each_computation_sees_its_own_flag() {
        let (a, b) = (Cancel::new(), Cancel::new());
        a.cancel();
        std::thread::scope(|s| {
            let stopped = s.spawn(|| run(Some(&a), || Ok(map_chunks(1 << 16, |r| r.len()))));
            let finished = s.spawn(|| run(Some(&b), || Ok(map_chunks(1 << 16, |r| r.len()).len())));
            assert_eq!(stopped.join().unwrap(), Err(Error::Aborted));
            assert_eq!(finished.join().unwrap(), Ok(128));
        });
    }
}
