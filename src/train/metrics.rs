//! Training metrics as JSON lines: one object per record (step, split,
//! loss, learning rate, gradient norm, tokens/s, seconds since the writer
//! started, and any named value), written and flushed one at a time, so a
//! run that crashes keeps everything it logged. [`read_metrics`] reads a
//! file back (for plots, or to compare runs).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One line of a metrics file. Fields left `None` are not written.
///
/// ```
/// use zeroformer::train::Record;
/// let r = Record::new(100).split("val").loss(1.5).value("accuracy", 0.75);
/// assert_eq!(r.values["accuracy"], 0.75);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The optimisation step the record describes.
    pub step: u64,
    /// What was measured on: `train`, `val`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
    /// The mean loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// The learning rate of the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// The gradients' joint norm before clipping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_norm: Option<f64>,
    /// Training throughput.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_s: Option<f64>,
    /// Seconds since the writer was created (set by [`MetricsWriter::write`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_s: Option<f64>,
    /// Any other named value (accuracy, bits per byte, ...).
    #[serde(flatten)]
    pub values: BTreeMap<String, f64>,
}

impl Record {
    /// A record of `step` with nothing measured yet.
    pub fn new(step: u64) -> Record {
        Record {
            step,
            ..Record::default()
        }
    }

    /// Measured on `split`.
    pub fn split(mut self, split: &str) -> Record {
        self.split = Some(split.to_string());
        self
    }

    /// With a loss.
    pub fn loss(mut self, loss: impl Into<f64>) -> Record {
        self.loss = Some(loss.into());
        self
    }

    /// With the learning rate.
    pub fn lr(mut self, lr: impl Into<f64>) -> Record {
        self.lr = Some(lr.into());
        self
    }

    /// With the gradient norm.
    pub fn grad_norm(mut self, norm: impl Into<f64>) -> Record {
        self.grad_norm = Some(norm.into());
        self
    }

    /// With the throughput.
    pub fn tokens_per_s(mut self, rate: impl Into<f64>) -> Record {
        self.tokens_per_s = Some(rate.into());
        self
    }

    /// With a named value.
    pub fn value(mut self, name: &str, value: impl Into<f64>) -> Record {
        self.values.insert(name.to_string(), value.into());
        self
    }
}

/// Appends [`Record`]s to a file, a JSON object per line, each flushed as
/// it is written.
///
/// ```
/// use zeroformer::train::{MetricsWriter, Record, read_metrics};
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("metrics.jsonl");
/// let mut metrics = MetricsWriter::append(&path)?;
/// metrics.write(Record::new(10).split("train").loss(2.5))?;
/// metrics.write(Record::new(10).split("val").loss(2.7).value("bpb", 1.9))?;
/// let back = read_metrics(&path)?;
/// assert_eq!((back.len(), back[1].loss, back[1].values["bpb"]), (2, Some(2.7), 1.9));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct MetricsWriter {
    file: std::fs::File,
    path: PathBuf,
    started: Instant,
}

impl MetricsWriter {
    /// Opens `path` for appending (created when missing): a resumed run
    /// continues its file.
    pub fn append(path: impl AsRef<Path>) -> Result<MetricsWriter> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("creating the folder", dir, e))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io("opening the metrics file", path, e))?;
        Ok(MetricsWriter {
            file,
            path: path.to_path_buf(),
            started: Instant::now(),
        })
    }

    /// Writes `record` as one line (its `elapsed_s` set to the seconds
    /// since this writer was opened, unless given) and flushes it.
    /// Non-finite numbers are written as `null`.
    pub fn write(&mut self, mut record: Record) -> Result<()> {
        record
            .elapsed_s
            .get_or_insert(self.started.elapsed().as_secs_f64());
        let mut line = serde_json::to_string(&record).expect("a record serialises");
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|e| Error::io("writing metrics", &self.path, e))
    }
}

/// Every record of a metrics file, in order. A line that is not a record
/// is an error naming its number (a line cut short by a crash, the last,
/// is skipped). `null` numbers read as absent.
pub fn read_metrics(path: impl AsRef<Path>) -> Result<Vec<Record>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("reading metrics", path, e))?;
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line) {
            Ok(r) => out.push(r),
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => {}
            Err(e) => {
                return Err(Error::invalid_file(path, format!("line {}: {e}", i + 1)));
            }
        }
    }
    Ok(out)
}

/// A record from one line; named values that are `null` are dropped.
fn parse_line(line: &str) -> std::result::Result<Record, serde_json::Error> {
    let mut value: serde_json::Value = serde_json::from_str(line)?;
    if let Some(map) = value.as_object_mut() {
        map.retain(|_, v| !v.is_null());
    }
    serde_json::from_value(value)
}
