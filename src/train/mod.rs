//! Training, kept small enough to read in one go (as nanoGPT's train.py): a
//! [`Trainer`] that owns a model, the AdamW optimizer and the data
//! sampler's RNG and takes one optimisation step at a time, checkpoints
//! that resume bit-exactly, and evaluation. Any model that maps a batch to
//! a loss ([`Trainable`]) trains with it: the built-in GPT (batches of
//! token windows), encoder and encoder-decoder, and your own.

mod config;
pub mod memory;
mod metrics;
mod objective;
mod trainer;

pub use config::TrainConfig;
pub use metrics::{MetricsWriter, Record, read_metrics};
pub use objective::{Batch, Trainable, batch_losses, forward_backward, mean_loss};
pub use trainer::{StepStats, Trainer};
