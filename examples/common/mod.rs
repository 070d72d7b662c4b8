//! What the examples share: where they run (`--device` and `--threads`),
//! how they end on an error (the message, then exit code 1), and a
//! training run's progress.

// Each example uses part of what is here.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
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

/// How often a plain progress line is printed when there is no terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(10);

/// A training run's progress: a bar on a terminal; without one (piped, CI,
/// nohup) the bar is hidden, and [`plain_due`](Self::plain_due) says when
/// a plain line is due instead.
pub struct Progress {
    /// The bar: `inc`, `set_position`, `set_message` as usual.
    pub bar: ProgressBar,
    steps: u64,
    last_plain: Instant,
}

impl Progress {
    /// A bar of `steps` steps, `done` of them already (a resumed run).
    pub fn new(steps: u64, done: u64) -> Progress {
        let bar = ProgressBar::new(steps).with_position(done);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} ({percent}%) {msg} elapsed {elapsed} ETA {eta}",
            )
            .expect("valid template"),
        );
        Progress {
            bar,
            steps,
            last_plain: Instant::now(),
        }
    }

    /// True, once every 10 s and at the last step, when the bar is hidden:
    /// print a plain progress line then.
    pub fn plain_due(&mut self, step: u64) -> bool {
        let due = self.bar.is_hidden()
            && (self.last_plain.elapsed() >= PLAIN_EVERY || step == self.steps);
        if due {
            self.last_plain = Instant::now();
        }
        due
    }
}
