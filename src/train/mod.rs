//! Training, kept small enough to read in one go (as nanoGPT's train.py): a
//! [`Trainer`] that owns a model, the AdamW optimizer and the data
//! sampler's RNG and takes one optimisation step at a time, checkpoints
//! that resume bit-exactly, and evaluation. Any model that maps a batch to
//! a loss ([`Trainable`]) trains with it: the built-in GPT (batches of
//! token windows), encoder and encoder-decoder, and your own.

mod config;
mod memory;
mod metrics;
mod objective;
mod trainer;

pub use config::TrainConfig;
pub(crate) use memory::{check_encoder_decoder_step_fits, check_step_fits};
pub use memory::{encoder_decoder_step_memory, step_memory};
pub use metrics::{MetricsWriter, Record, read_metrics};
pub use objective::{Batch, Trainable, batch_losses, evaluate, forward_backward, mean_loss};
pub use trainer::{StepStats, Trainer};
