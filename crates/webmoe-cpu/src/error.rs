//! Errors of the CPU backend.

use thiserror::Error;

/// Errors of the CPU backend.
#[derive(Debug, Error)]
pub enum CpuError {
    /// The model does not fit the memory the CPU backend may use.
    #[error("the model does not fit the CPU backend: {0}")]
    TooLarge(String),
    /// A request the engine cannot serve (tokens over the context, ids outside the vocabulary).
    #[error("{0}")]
    Invalid(String),
    /// Tensor data that cannot be stored (unknown tensor, wrong size).
    #[error("storing weights: {0}")]
    Load(String),
}
