//! Training, kept small enough to read in one go (as nanoGPT's train.py): a
//! [`Trainer`] that owns a model, the AdamW optimizer and the data
//! sampler's RNG and takes one optimisation step at a time, checkpoints
//! that resume bit-exactly, and evaluation. Any model that maps a batch to
//! a loss ([`Trainable`]) trains with it: the built-in GPT (batches of
//! token windows), encoder and encoder-decoder, and your own.
//!
//! Imports run one way, train → models → nn: what a model needs of
//! training (the [`Trainable`] trait, evaluation) lives in `models` and is
//! re-exported here.

mod config;
mod data_parallel;
mod language_model;
pub mod memory;
mod metrics;
mod trainer;

pub use crate::models::{Batch, Trainable, batch_losses, mean_loss};
pub use config::{Precision, TrainConfig};
pub use data_parallel::forward_backward;
pub use metrics::{MetricsWriter, Record, read_metrics};
pub use trainer::{StepStats, Trainer};
