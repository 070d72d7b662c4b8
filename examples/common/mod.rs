//! What the examples share: where they run (`--device` and `--threads`)
//! and how they end on an error (the message, then exit code 1).

use zeroformer::{Device, Error};

/// Where an example runs, flattened into its flags
/// (`#[command(flatten)] run_on: RunOn`).
#[derive(clap::Args, Clone, Debug)]
pub struct RunOn {
    /// Where to run: cpu, cuda or cuda:N (the `cuda` feature).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Worker threads, >= 1 (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
}

impl RunOn {
    /// `f` with the pool's thread count set and the device made the
    /// default for every tensor made without naming one.
    pub fn run<T, E: From<Error>>(&self, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        Device::set_threads(self.threads)?;
        let device: Device = self.device.parse()?;
        device.as_default(f)
    }
}

/// Prints the error and exits with code 1 when `result` is one.
pub fn exit_on_error<E: std::fmt::Display>(result: Result<(), E>) {
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
