//! The CancelFlag class: the JavaScript handle of a core `Cancel` flag. The TypeScript wrapper
//! raises it when the caller's AbortSignal fires; the async task watching it then rejects with
//! HH_ABORTED at its next chunk boundary.

use crate::core;
use napi_derive::napi;

#[napi]
#[derive(Default)]
pub struct CancelFlag {
    pub(crate) inner: core::cancel::Cancel,
}

#[napi]
impl CancelFlag {
    #[napi(constructor)]
    pub fn new() -> Self {
        CancelFlag::default()
    }

    /// Asks the computations watching this flag to stop.
    #[napi]
    pub fn cancel(&self) {
        self.inner.cancel();
    }

    #[napi(getter)]
    pub fn cancelled(&self) -> bool {
        self.inner.is_cancelled()
    }
}

/// The core flag behind an optional JavaScript one (cloned: the task owns its handle).
pub(crate) fn flag_of(flag: Option<&CancelFlag>) -> Option<core::cancel::Cancel> {
    flag.map(|f| f.inner.clone())
}
