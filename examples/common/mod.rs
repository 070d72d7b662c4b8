//! What the examples share: `main` (the flags parsed, the run on the
//! device they name, and an error's message then exit code 1), where they
//! run (`--device` and `--threads`), where their metrics go
//! (`--metrics`), the sampling flags, a training run's progress, its
//! output folder, and Ctrl-C.

// Each example uses part of what is here.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use zeroformer::checkpoint::remove_stale_temp_files;
use zeroformer::generation::Sampling;
use zeroformer::train::{MetricsWriter, Record};
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
    /// `f` given the device the flags name, with the pool's thread count
    /// set.
    pub fn run<T, E: From<Error>>(&self, f: impl FnOnce(&Device) -> Result<T, E>) -> Result<T, E> {
        Device::set_threads(self.threads)?;
        let device: Device = self.device.parse()?;
        f(&device)
    }
}

/// `--metrics FILE`, flattened into an example's flags
/// (`#[command(flatten)] metrics: MetricsFile`).
#[derive(clap::Args, Clone, Debug)]
pub struct MetricsFile {
    /// Append metrics to this file, a JSON object per line, flushed as
    /// written (the example's docs list its records).
    #[arg(long = "metrics")]
    pub path: Option<PathBuf>,
}

impl MetricsFile {
    /// The file, opened for appending; without `--metrics`, a sink that
    /// keeps nothing.
    pub fn open(&self) -> Result<Metrics, Error> {
        let writer = self.path.as_ref().map(MetricsWriter::append).transpose()?;
        Ok(Metrics(writer))
    }
}

/// Where an example's records go: the `--metrics` file, or nowhere.
pub struct Metrics(Option<MetricsWriter>);

impl Metrics {
    /// Appends `record` to the file, when there is one.
    pub fn write(&mut self, record: Record) -> Result<(), Error> {
        match &mut self.0 {
            Some(writer) => writer.write(record),
            None => Ok(()),
        }
    }
}

/// An example's `main`: parses the flags, then runs `work` on the device
/// and threads they name (`run_on`), ending in exit code 1 with the
/// message on an error.
pub fn main<A: clap::Parser, E: std::fmt::Display + From<Error>>(
    run_on: fn(&A) -> &RunOn,
    work: impl FnOnce(A, &Device) -> Result<(), E>,
) {
    let args = A::parse();
    let on = run_on(&args).clone();
    exit_on_error(on.run(|device| work(args, device)));
}

/// A small Transformer's shape, flattened into a training example's flags.
#[derive(clap::Args, Clone, Debug)]
pub struct ShapeFlags {
    /// Model width.
    #[arg(long, default_value_t = 64)]
    pub d_model: usize,
    /// Layers (in the encoder, and again in the decoder of an
    /// encoder-decoder).
    #[arg(long, default_value_t = 2)]
    pub layers: usize,
    /// Attention heads per layer.
    #[arg(long, default_value_t = 4)]
    pub heads: usize,
}

/// The sampling flags, flattened into a generating example's flags.
#[derive(clap::Args, Clone, Debug)]
pub struct SamplingFlags {
    /// Sampling temperature, finite and >= 0 (0: greedy).
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    /// Sample among the k most likely tokens only, k >= 1.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Sample from the smallest set of tokens whose probability reaches p, in (0, 1].
    #[arg(long)]
    pub top_p: Option<f32>,
}

impl SamplingFlags {
    /// The sampling the flags ask for, checked.
    pub fn sampling(&self) -> Result<Sampling, Error> {
        Sampling::new(self.temperature, self.top_k, self.top_p)
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

/// `m:ss` (or `h:mm:ss`).
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// Set by the first SIGINT (Ctrl-C) or SIGTERM after
/// [`watch_interrupts`]: a training loop finishes its step, saves it and
/// exits 130. A second signal exits at once (saves are atomic, so the last
/// checkpoint stays whole).
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Starts watching for Ctrl-C and SIGTERM.
pub fn watch_interrupts() -> Result<(), Error> {
    ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    })
    .map_err(|e| Error::InvalidConfig(format!("watching for Ctrl-C: {e}")))
}

/// Whether a first Ctrl-C or SIGTERM came.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Creates a run's output folder, proves it writable and clears the
/// temporary files of runs killed mid-save, before training starts.
pub fn prepare_out_dir(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating the output folder", dir, e))?;
    let probe = dir.join(".write-test");
    std::fs::write(&probe, b"").map_err(|e| Error::io("writing to the output folder", dir, e))?;
    std::fs::remove_file(&probe).map_err(|e| Error::io("cleaning the output folder", dir, e))?;
    for stale in remove_stale_temp_files(dir)? {
        println!(
            "removed {}, left by a run that was killed while saving",
            stale.display()
        );
    }
    Ok(())
}
