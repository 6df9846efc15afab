//! Quarantine: the records a job could not read, transform or write, kept whole for repair.
//!
//! A job with a [`Quarantine`] writes every record that fails (a ragged CSV row, a transform's
//! rejection, a row the sink refuses, a key or version conflict) to a JSON Lines file of its
//! batch in the job's folder, one [`QuarantinedRecord`] a line: the input it was read from,
//! the record's position, the stage it failed at, the full reason, and its raw bytes as the
//! source holds them (a CSV or JSON Lines line; sources that cannot give them leave `raw`
//! empty, see [`Source::raw_records`](crate::connector::Source::raw_records)). A batch's file
//! is named by its input (the fingerprint of the input's version, and the input's name in a
//! sharded job) and its place in it, as sinks scope record ids, so a job id reused over
//! another input adds files and the same input run again replaces its own.
//!
//! The file of a batch is written before the batch counts as done, replaced whole (written
//! aside, synced, then renamed), so a retried batch quarantines its records once; a batch
//! that now has no failed records removes its file. A quarantine that cannot be written
//! fails the batch like a sink that cannot: it is retried, then a failed batch that `redrive`
//! reruns; a record is never counted as quarantined unless it is in its file. Record values
//! never enter workflow history: the files are the worker's.
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
    /// The input it was read from, as sinks scope record ids: `<job id>@<fingerprint of the
    /// input>`, or `<job id>/<input name>@<fingerprint>` in a sharded job.
    #[serde(default)]
    pub input: String,
    /// The batch it was read in: its index, or in a sharded job the ordinal of its first
    /// record within its input.
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

/// The quarantine file of one batch: the job, the batch's input scope and its number there.
pub(crate) struct BatchFile<'a> {
    pub job_id: &'a str,
    /// The id scope sinks are given (`<job id>@<fingerprint>`, `<job id>/<input>@<fp>`).
    pub input: &'a str,
    pub batch: u64,
}

impl BatchFile<'_> {
    fn path(&self, quarantine: &Quarantine) -> PathBuf {
        let within = self.input.strip_prefix(self.job_id).unwrap_or(self.input);
        quarantine.job_dir(self.job_id).join(format!(
            "{}-{:012}.jsonl",
            file_name(within),
            self.batch
        ))
    }
}

/// Writes the failed records of a batch to its file, replaced whole. `raw` holds the
/// source's bytes of the failed records it could find, by record ordinal. Returns how many it
/// wrote.
pub(crate) async fn write_batch(
    quarantine: &Quarantine,
    file: &BatchFile<'_>,
    failed: &[(Stage, RecordError)],
    raw: &std::collections::HashMap<u64, Vec<u8>>,
) -> Result<u64, ConnectorError> {
    let path = file.path(quarantine);
    let dir = quarantine.job_dir(file.job_id);
    let unwritable = |e: std::io::Error| {
        ConnectorError::transient(format!(
            "cannot write the quarantine of batch {} to {}: {e}",
            file.batch,
            dir.display()
        ))
    };
    let mut lines = Vec::new();
    for (stage, error) in failed {
        // The record without its line end: the line end belongs to the file.
        let bytes = raw
            .get(&error.position.record)
            .map(|b| b.strip_suffix(b"\n").unwrap_or(b))
            .map(|b| b.strip_suffix(b"\r").unwrap_or(b));
        let text = bytes.and_then(|b| std::str::from_utf8(b).ok());
        let record = QuarantinedRecord {
            job_id: file.job_id.to_owned(),
            input: file.input.to_owned(),
            batch: file.batch,
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
    // Aside under a name of this attempt's own (another attempt of the batch may still run
    // on a worker presumed dead), synced before the rename that publishes it.
    let aside = dir.join(format!(
        ".{}.{}-{}.part",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("batch"),
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    ));
    let publish = async {
        tokio::fs::create_dir_all(&dir).await?;
        let mut out = tokio::fs::File::create(&aside).await?;
        tokio::io::AsyncWriteExt::write_all(&mut out, &lines).await?;
        out.sync_all().await?;
        drop(out);
        tokio::fs::rename(&aside, &path).await?;
        // The rename itself, durable.
        tokio::fs::File::open(&dir).await?.sync_all().await
    };
    if let Err(e) = publish.await {
        let _ = tokio::fs::remove_file(&aside).await;
        return Err(unwritable(e));
    }
    Ok(failed.len() as u64)
}

/// Removes the file of a batch that has no failed records (any more): a rerun of its input
/// whose records now pass leaves no stale file behind.
pub(crate) async fn clear_batch(
    quarantine: &Quarantine,
    file: &BatchFile<'_>,
) -> Result<(), ConnectorError> {
    let path = file.path(quarantine);
    match tokio::fs::remove_file(&path).await {
        Ok(()) => Ok(()),
        // No file, or not even its folder: nothing stale.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(ConnectorError::transient(format!(
            "cannot remove the stale quarantine file {}: {e}",
            path.display()
        ))),
    }
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

/// A job id or input scope as one path component: characters other than letters, digits and
/// `-_.@:` become `_`, and a name so changed (or too long) ends with a hash of the original,
/// so two names never share a file.
fn file_name(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.@:".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe == name && safe.len() <= 120 {
        return safe;
    }
    // FNV-1a: stable across builds and platforms, unlike `DefaultHasher`.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut cut = safe.len().min(100);
    while !safe.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}~{hash:016x}", &safe[..cut])
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
    fn job_ids_are_one_path_component_and_never_share_one() {
        let q = Quarantine::dir("/q");
        assert_eq!(q.job_dir("people-1"), Path::new("/q/people-1"));
        let changed = file_name("a/b c");
        assert!(changed.starts_with("a_b_c~"), "{changed}");
        assert_ne!(file_name("a/b"), file_name("a_b"));
        assert!(file_name(&"x".repeat(300)).len() < 130);
    }
}
