//! One computation, run alike by a sync export (on the JS thread) and by its async form (on the
//! libuv pool, watching a cancel flag): the sync form calls `run`, the async form wraps the same
//! job, with its inputs copied, in a `JobTask`. One Task type serves every async export.

use crate::cancel::{flag_of, CancelFlag};
use crate::core;
use crate::{guard_task, settle, Computed};
use napi::bindgen_prelude::*;

/// A computation with owned inputs and its conversion to a JavaScript value.
pub trait Job: Send {
    /// What the computation returns (plain Rust data, built off the JS thread).
    type Data: Send + 'static;
    /// The JavaScript value it becomes.
    type Js: ToNapiValue + TypeName;
    fn run(&self) -> core::Result<Self::Data>;
    fn to_js(data: Self::Data) -> Self::Js;
}

/// A job on the libuv pool; a raised `cancel` flag rejects it with HH_ABORTED.
pub struct JobTask<J: Job + 'static> {
    job: J,
    cancel: Option<core::cancel::Cancel>,
}

/// The async form of `job`: the promise the export returns.
pub fn spawn<J: Job + 'static>(job: J, cancel: Option<&CancelFlag>) -> AsyncTask<JobTask<J>> {
    AsyncTask::new(JobTask { job, cancel: flag_of(cancel) })
}

impl<J: Job + 'static> Task for JobTask<J> {
    type Output = Computed<J::Data>;
    type JsValue = J::Js;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        guard_task(self.cancel.as_ref(), || self.job.run())
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        settle(&env, output).map(J::to_js)
    }
}
