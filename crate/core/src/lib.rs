//! harm-horizon-core: the numerical core of harm-horizon.
//!
//! Exact dynamic programming over finite-state models of response generation: the harm martingale
//! h_t, harm information I_t, the harm horizon, per-position gradients of E[H] and their bound, the
//! Gibbs optimum of λ·E[H] + KL(P ‖ P_base), per-position KL and prefilling-attack success.
//! See THEORY.md of the project for the definitions.

pub mod alloc;
pub mod analysis;
pub mod error;
pub mod exact;
mod fused;
pub mod gibbs;
pub mod model;
pub mod parallel;
pub mod policy;
pub mod policy_spec;
pub mod lazy_tabular;

pub use error::{Error, Result};
pub mod rng;
pub mod sampling;
pub mod row_sampler;
pub mod sample_into;
pub mod walk;
pub mod mlp;
pub mod gemm;
pub mod vector_math;
pub mod transformer;
pub mod transformer_table;
pub mod estimate;
mod covariance;
pub mod fit;
pub mod optim;
pub mod monte_carlo;
mod by_position;
pub mod objective;
pub mod rl;
pub mod attack;
pub mod fixed_point;
pub mod proposal;
pub mod information;
pub mod log_stats;
pub mod limits;
pub mod cancel;
