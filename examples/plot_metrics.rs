//! Draw the loss curves of a metrics file (what `--metrics FILE` of the
//! training examples writes, or your own `MetricsWriter`): every split's
//! loss against the step.
//!
//!     cargo run --release --example plot_metrics -- --metrics out-shakespeare/metrics.jsonl --out loss.png
//!     cargo run --release --example plot_metrics -- --metrics run.jsonl --out loss.png --log-y --split val

mod common;

use std::path::PathBuf;

use clap::Parser;
use zeroformer::plot;
use zeroformer::train::read_metrics;
use zeroformer::{Error, Result};

/// Draw a metrics file's loss curves as a PNG.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The metrics file: one JSON object per line.
    #[arg(long)]
    metrics: PathBuf,
    /// The PNG to write.
    #[arg(long, default_value = "loss.png")]
    out: PathBuf,
    /// A logarithmic loss axis.
    #[arg(long)]
    log_y: bool,
    /// Draw only these splits (repeatable; default: every split).
    #[arg(long = "split")]
    splits: Vec<String>,
    /// The chart's title.
    #[arg(long, default_value = "Loss")]
    title: String,
}

fn main() {
    common::exit_on_error(run(Args::parse()));
}

fn run(args: Args) -> Result<()> {
    let mut records = read_metrics(&args.metrics)?;
    if !args.splits.is_empty() {
        records.retain(|r| {
            let split = r.split.as_deref().unwrap_or("train");
            args.splits.iter().any(|s| s == split)
        });
        if records.is_empty() {
            return Err(Error::InvalidData(format!(
                "{} has no record of the splits {:?}",
                args.metrics.display(),
                args.splits
            )));
        }
    }
    let chart = plot::loss_chart(&records)?
        .title(&args.title)
        .log_y(args.log_y);
    chart.save(&args.out)?;
    let splits: Vec<&str> = chart.series_names().collect();
    println!(
        "drew {} ({} records; {})",
        args.out.display(),
        records.len(),
        splits.join(", ")
    );
    Ok(())
}
