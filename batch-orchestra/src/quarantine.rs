//! Quarantine: the records a job could not read, transform or write, kept whole for repair.
//!
//! A job with a [`Quarantine`] writes every record that fails (a ragged CSV row, a transform's
//! rejection, a row the sink refuses, a key or version conflict) to a JSON Lines file of its
//! batch, `<dir>/<job id>/<batch>.jsonl`, one [`QuarantinedRecord`] a line: the record's
//! position, the stage it failed at, the full reason, and its raw bytes as the source holds
//! them (a CSV or JSON Lines line; sources that cannot give them leave `raw` empty, see
//! [`Source::raw_records`](crate::connector::Source::raw_records)).
//!
//! The file of a batch is written before the batch counts as done, replaced whole (written
//! aside, then renamed), so a retried batch quarantines its records once. A quarantine that
//! cannot be written fails the batch like a sink that cannot: it is retried, then a failed
//! batch that `redrive` reruns; a record is never counted as quarantined unless it is in its
//! file. Record values never enter workflow history: the files are the worker's.
//!
//! ```
//! use batch_orchestra::quarantine::Quarantine;
//!
//! let q = Quarantine::dir("/var/lib/batch-orchestra/quarantine");
//! assert_eq!(q.job_dir("people-2026-12-07"), std::path::Path::new("/var/lib/batch-orchestra/quarantine/people-2026-12-07"));
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{ConnectorError, RecordError};
use crate::record::Position;

/// Where a job keeps its failed records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Quarantine {
    /// A local directory (on every worker: a shared mount for several machines), one folder
    /// per job, one JSON Lines file per batch with failed records.
    Dir(String),
}

impl Quarantine {
    /// A local directory.
    pub fn dir(path: impl Into<String>) -> Self {
        Self::Dir(path.into())
    }

    /// The folder of job `job_id`'s files.
    pub fn job_dir(&self, job_id: &str) -> PathBuf {
        let Self::Dir(dir) = self;
        Path::new(dir).join(file_name(job_id))
    }

    /// Where it is, for messages: the job's folder.
    pub fn describe(&self, job_id: &str) -> String {
        self.job_dir(job_id).display().to_string()
    }
}

/// The stage a record failed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The source could not read it (malformed, not UTF-8, the wrong shape).
    Read,
    /// The transform rejected it.
    Transform,
    /// The sink refused it (a value its column rejects, a key or version conflict).
    Write,
}

/// One quarantined record: a line of a quarantine file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantinedRecord {
    /// The job that read it.
    pub job_id: String,
    /// The batch it was read in.
    pub batch: u64,
    /// Where it sits in the source.
    pub position: Position,
    /// Where it failed.
    pub stage: Stage,
    /// Why, in full.
    pub reason: String,
    /// Its bytes in the source, as text when they are UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// Its bytes in the source, base64, when they are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_base64: Option<String>,
}

impl QuarantinedRecord {
    /// The record as the source holds it, when the source could give it.
    pub fn raw_bytes(&self) -> Option<Vec<u8>> {
        match (&self.raw, &self.raw_base64) {
            (Some(text), _) => Some(text.clone().into_bytes()),
            (None, Some(b64)) => base64_decode(b64),
            (None, None) => None,
        }
    }
}

/// Writes the failed records of batch `batch` of job `job_id` to the batch's file, `<stem>.jsonl`
/// in the job's folder, replaced whole. `raw` holds the source's bytes of the failed records
/// it could find, by record ordinal. Returns how many it wrote.
pub(crate) async fn write_batch(
    quarantine: &Quarantine,
    job_id: &str,
    batch: u64,
    stem: &str,
    failed: &[(Stage, RecordError)],
    raw: &std::collections::HashMap<u64, Vec<u8>>,
) -> Result<u64, ConnectorError> {
    let dir = quarantine.job_dir(job_id);
    let unwritable = |e: std::io::Error| {
        ConnectorError::transient(format!(
            "cannot write the quarantine of batch {batch} to {}: {e}",
            dir.display()
        ))
    };
    tokio::fs::create_dir_all(&dir).await.map_err(unwritable)?;
    let mut lines = Vec::new();
    for (stage, error) in failed {
        // The record without its line end: the line end belongs to the file.
        let bytes = raw
            .get(&error.position.record)
            .map(|b| b.strip_suffix(b"\n").unwrap_or(b))
            .map(|b| b.strip_suffix(b"\r").unwrap_or(b));
        let text = bytes.and_then(|b| std::str::from_utf8(b).ok());
        let record = QuarantinedRecord {
            job_id: job_id.to_owned(),
            batch,
            position: error.position,
            stage: *stage,
            reason: error.message.clone(),
            raw: text.map(str::to_owned),
            raw_base64: match (bytes, text) {
                (Some(b), None) => Some(base64_encode(b)),
                _ => None,
            },
        };
        serde_json::to_writer(&mut lines, &record).map_err(|e| {
            ConnectorError::transient(format!("cannot encode a quarantined record: {e}"))
        })?;
        lines.push(b'\n');
    }
    let stem = file_name(stem);
    let path = dir.join(format!("{stem}.jsonl"));
    let aside = dir.join(format!(".{stem}.jsonl.part"));
    tokio::fs::write(&aside, &lines).await.map_err(unwritable)?;
    tokio::fs::rename(&aside, &path).await.map_err(unwritable)?;
    Ok(failed.len() as u64)
}

/// The quarantined records of job `job_id`, by batch and then in the order they were found.
pub fn read_job(
    quarantine: &Quarantine,
    job_id: &str,
) -> Result<Vec<QuarantinedRecord>, ConnectorError> {
    let dir = quarantine.job_dir(job_id);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(ConnectorError::config(format!(
                "cannot read the quarantine {}: {e}",
                dir.display()
            )));
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    let mut records = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| ConnectorError::config(format!("cannot read {}: {e}", file.display())))?;
        for (n, line) in text.lines().enumerate() {
            let record = serde_json::from_str(line).map_err(|e| {
                ConnectorError::config(format!(
                    "{} line {}: not a quarantined record: {e}",
                    file.display(),
                    n + 1
                ))
            })?;
            records.push(record);
        }
    }
    Ok(records)
}

/// A job id as one path component: `/` and other separators become `_`.
fn file_name(job_id: &str) -> String {
    job_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.@:".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_one_path_component() {
        let q = Quarantine::dir("/q");
        assert_eq!(q.job_dir("a/b c"), Path::new("/q/a_b_c"));
    }
}
