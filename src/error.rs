//! Errors for everything that touches the outside world: files, devices,
//! configs. Tensor math does not return these: a shape, dtype or device
//! mismatch is a programmer error and panics, naming the op and the shapes.

use std::path::PathBuf;

/// The crate's error type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done: `"reading the checkpoint"`.
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// CUDA was asked for but cannot be used in this build or on this machine.
    #[error("CUDA is unavailable: {0}")]
    CudaUnavailable(String),
    /// A model or training configuration that cannot be used.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A checkpoint that cannot be read or does not fit the model.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A file (a tokenizer's vocabulary, a model directory's config) whose
    /// content cannot be used.
    #[error("{path}: {message}")]
    InvalidFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it, naming the entry or field.
        message: String,
    },
    /// A download that failed (the `hub` feature): the address and what
    /// went wrong, with what to do about it.
    #[error("downloading {url}: {message}")]
    Download {
        /// What was being downloaded.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// Input data that does not have the form the crate expects.
    #[error("invalid data: {0}")]
    InvalidData(String),
    /// Training produced a loss or gradient norm that is NaN or infinite
    /// (or a norm too large to square in f32); the step was not applied.
    #[error(
        "training diverged at step {step}: loss {loss:e}, gradient norm {grad_norm:e}; the step was not applied (lower the learning rate)"
    )]
    Diverged {
        /// The step that diverged (counting from 1).
        step: usize,
        /// Its loss.
        loss: f32,
        /// Its gradients' joint norm before clipping.
        grad_norm: f32,
    },
}

impl Error {
    /// Wraps an I/O error with what was being done and to which file.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

impl Error {
    /// What is wrong with the file at `path`.
    pub fn invalid_file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::InvalidFile {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// `Result` with the crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
