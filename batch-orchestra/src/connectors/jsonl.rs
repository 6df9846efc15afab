//! The JSON-lines sink: one file per batch, so a retried batch overwrites its own file and
//! nothing is written twice.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::PathBuf;

use crate::connector::{Positioned, Sink, WriteContext, WriteOutcome};
use crate::error::ConnectorError;

/// A directory of JSON-lines files, `<dir>/<job id>-<batch>.jsonl`, one JSON value a line.
#[crate::batch_sink(name = "json-lines", writer = JsonLinesWriter)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonLinesDir {
    /// The directory, created when missing.
    pub dir: String,
}

impl JsonLinesDir {
    /// Files go to `dir`.
    pub fn new(dir: impl Into<String>) -> Self {
        Self { dir: dir.into() }
    }

    async fn build_sink(&self) -> Result<JsonLinesWriter, ConnectorError> {
        let dir = PathBuf::from(&self.dir);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| ConnectorError::io(format!("cannot create {}", self.dir), &e))?;
        Ok(JsonLinesWriter { dir })
    }
}

/// A built JSON-lines sink.
pub struct JsonLinesWriter {
    dir: PathBuf,
}

impl Sink for JsonLinesWriter {
    type Record = serde_json::Value;

    async fn write(
        &self,
        ctx: &WriteContext,
        records: Vec<Positioned<serde_json::Value>>,
    ) -> Result<WriteOutcome, ConnectorError> {
        let job = crate::snapshot::file_safe(&ctx.job_id);
        let file = self.dir.join(format!("{job}-{:08}.jsonl", ctx.batch));
        let tmp = file.with_extension("jsonl.tmp");
        let count = records.len() as u64;
        let (tmp2, file2) = (tmp.clone(), file.clone());
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp2)?);
            for record in &records {
                serde_json::to_writer(&mut out, &record.value)?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
            std::fs::rename(&tmp2, &file2)
        })
        .await
        .map_err(|e| ConnectorError::transient(format!("{}: {e}", file.display())))?
        .map_err(|e| ConnectorError::io(format!("cannot write {}", tmp.display()), &e))?;
        Ok(WriteOutcome {
            written: count,
            ..WriteOutcome::default()
        })
    }
}
