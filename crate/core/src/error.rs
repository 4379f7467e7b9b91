//! The domain error type. The binding maps it to a JavaScript Error with a stable `code`.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// The numeric scenario specification is malformed (wrong shapes, bad indices, bad rows).
    InvalidSpec(String),
    /// An argument (policy shape, λ, tolerance, …) is out of range.
    InvalidArgument(String),
    /// A policy's numbers cannot define a distribution (a NaN logit, a row with no finite logit).
    PolicyInvalid(String),
    /// The reachable state space exceeds the memory budget.
    StateSpaceTooLarge { states: usize, bytes: u64, budget: u64 },
    /// A buffer sized by the input (named by `what`) cannot be allocated: its size overflows or the
    /// machine refuses it (`bytes` is infinite when the size overflows).
    OutOfMemory { what: String, bytes: f64 },
    /// The caller cancelled the computation (see cancel.rs).
    Aborted,
}

impl Error {
    /// Stable machine-readable code, surfaced as `error.code` in JavaScript.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "HH_INVALID_SPEC",
            Error::InvalidArgument(_) => "HH_INVALID_ARGUMENT",
            Error::PolicyInvalid(_) => "HH_POLICY_INVALID",
            Error::StateSpaceTooLarge { .. } => "HH_STATE_SPACE_TOO_LARGE",
            Error::OutOfMemory { .. } => "HH_OUT_OF_MEMORY",
            Error::Aborted => "HH_ABORTED",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidSpec(m) => write!(f, "invalid scenario specification: {m}"),
            Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            Error::PolicyInvalid(m) => write!(f, "invalid policy: {m}"),
            Error::StateSpaceTooLarge { states, bytes, budget } => write!(
                f,
                "state space too large: more than {states} reachable states would need about {:.2} GiB, over the memory budget of {:.2} GiB",
                *bytes as f64 / GIB,
                *budget as f64 / GIB
            ),
            Error::OutOfMemory { what, bytes } if bytes.is_finite() => {
                write!(f, "out of memory: cannot allocate the {what} ({:.2} GiB)", bytes / GIB)
            }
            Error::OutOfMemory { what, .. } => write!(f, "out of memory: the size of the {what} overflows"),
            Error::Aborted => write!(f, "aborted: the computation was cancelled before it finished"),
        }
    }
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
