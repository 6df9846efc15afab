//! Every file a pattern matches, read as one source by one batch job ([`Files`]); read
//! incrementally, only the files created or changed since the last run ("new files only").
//!
//! The files are listed a page at a time, in key order, while the job plans: no listing is
//! ever held whole, in memory or in a payload, so a directory of 100,000 files costs what its
//! batches cost. Each batch lies within one file, and a sink is told the file's key and
//! version as the batch's scope, so a file's records get the ids a job over that file alone
//! would give them.
//!
//! An incremental run selects files by their change time (`ctime`): the moment a file was
//! created, copied, renamed into place or written, which no tool sets back (unlike the
//! modification time that `cp -p`, `rsync -a` and `mv` keep). A run pins the window
//! `(last run's bound, now - settle]` when it begins, so a file is read by exactly one run
//! once it is in place, however late it arrives in the directory; the cursor is that bound,
//! `{"changed_upto_ns": 1796689137000000000}`. A file created before the last run's bound and
//! changed after it was loaded is reloaded under its new version (logged), or with
//! [`ChangedFiles::Refuse`] reported as a record error naming it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::connector::{
    BatchRange, Bounds, Cursor, FileTimes, ListInputs, Offset, Plan, PlannedBatch, ReadBatch,
    Shard, Source, SourceConfig, Window,
};
use crate::error::{ConnectorError, RecordError};
use crate::record::Position;

/// The least settle time used: above the file system clock's tick, so a file written after a
/// run began never has a change time inside that run's window.
const MIN_SETTLE: Duration = Duration::from_millis(50);
/// Files listed per call while planning.
const LIST_PAGE: usize = 200;
/// Files a reader keeps (with their built sources) before it forgets the least recently
/// used half.
const KEPT: usize = 256;

/// Every file `each` lists (a glob: `CsvFile::new("exports/**/*.csv")`), read one after
/// another by one batch job. In an incremental job (`.incremental(sync)`), each run reads
/// only the files created or changed since the last completed run: see the
/// [module](self).
///
/// ```
/// use batch_orchestra::connectors::files::Files;
/// use batch_orchestra::connectors::jsonl::JsonLinesFile;
///
/// let source = Files::new(JsonLinesFile::new("landing/*.jsonl"));
/// assert_eq!(source.settle_ms, 2_000);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "S: SourceConfig")]
pub struct Files<S> {
    /// The config that lists the files and, with each file's path, reads it.
    pub each: S,
    /// What an incremental run does with a file that changed after an earlier run loaded it.
    #[serde(default)]
    pub changed: ChangedFiles,
    /// Files that changed this recently when a run begins are left to the next run (a
    /// write still in progress); milliseconds, at least 50.
    #[serde(default = "default_settle_ms")]
    pub settle_ms: u64,
    /// An incremental run's window, pinned by the run: `None` reads every file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<ChangeWindow>,
}

fn default_settle_ms() -> u64 {
    2_000
}

impl<S> Files<S> {
    /// Every file `each` lists.
    pub fn new(each: S) -> Self {
        Self {
            each,
            changed: ChangedFiles::default(),
            settle_ms: default_settle_ms(),
            window: None,
        }
    }

    /// Sets what an incremental run does with a file that changed after it was loaded.
    pub fn changed(mut self, changed: ChangedFiles) -> Self {
        self.changed = changed;
        self
    }

    /// Sets how long a file must have been left alone before a run reads it.
    pub fn settle(mut self, settle: Duration) -> Self {
        self.settle_ms = settle.as_millis() as u64;
        self
    }
}

/// What an incremental run does with a file created before the last run's bound and changed
/// since: a file an earlier run loaded, written again (or renamed, or copied over).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangedFiles {
    /// Read it again, as a new version (its records get new ids), and log it.
    #[default]
    Reload,
    /// Read nothing of it: one record error names the file, so the report and the
    /// quarantine show it.
    Refuse,
}

/// The files an incremental run reads: changed after `after_ns` (the last run's bound) and
/// at or before `upto_ns`, in nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeWindow {
    /// The last run's bound; `None` on a first run.
    pub after_ns: Option<u64>,
    /// This run's bound.
    pub upto_ns: u64,
}

/// A position in a [`Files`] source: the file (its key, and the key listed before it, where
/// a listing finds it again), the records before this offset in that file, and the file's own
/// offset (`None` at its start).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct FileOffset<O: Offset> {
    /// The key listed before the file's; `None` for the first file.
    pub after: Option<String>,
    /// The file's key.
    pub key: String,
    /// Records of the file before this offset.
    pub record: u64,
    /// The offset within the file; `None` at its start.
    pub at: Option<O>,
    /// Set on the one-record batch that reports a file refused by [`ChangedFiles::Refuse`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refused: bool,
}

/// The cursor of an incremental [`Files`] run.
#[derive(Serialize, Deserialize)]
struct FilesCursor {
    changed_upto_ns: u64,
}

fn parse_cursor(cursor: &Cursor, role: &str) -> Result<u64, ConnectorError> {
    serde_json::from_value::<FilesCursor>(cursor.clone())
        .map(|c| c.changed_upto_ns)
        .map_err(|e| {
            ConnectorError::config(format!(
                "the {role} cursor {cursor} is not a file listing's cursor ({e}): write one a run reported, like {{\"changed_upto_ns\": 1796689137000000000}}"
            ))
        })
}

impl<S: ListInputs> SourceConfig for Files<S> {
    const NAME: &'static str = S::NAME;
    type Record = S::Record;
    type Offset = FileOffset<S::Offset>;
    type Source = FilesReader<S>;

    async fn build(&self) -> Result<FilesReader<S>, ConnectorError> {
        Ok(FilesReader {
            config: self.clone(),
            files: Mutex::new(HashMap::new()),
            lookups: AtomicU64::new(0),
        })
    }

    /// Pins the window `(last run's bound or from, now - settle]`, or a range run's
    /// `(from, to]`.
    async fn begin_window(&self, bounds: Bounds) -> Result<Window<Self>, ConnectorError> {
        let previous = bounds
            .previous
            .as_ref()
            .map(|c| parse_cursor(c, "last run's"))
            .transpose()?;
        let from = bounds
            .from
            .as_ref()
            .map(|c| parse_cursor(c, "starting"))
            .transpose()?;
        let after_ns = match (previous, from) {
            (Some(p), Some(f)) => Some(p.min(f)),
            (p, f) => p.or(f),
        };
        let upto_ns = match &bounds.to {
            Some(to) => parse_cursor(to, "ending")?,
            None => {
                let settle = Duration::from_millis(self.settle_ms).max(MIN_SETTLE);
                let settled = SystemTime::now() - settle;
                settled
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64)
            }
        };
        let upto_ns = upto_ns.max(after_ns.unwrap_or(0));
        let mut source = self.clone();
        source.window = Some(ChangeWindow { after_ns, upto_ns });
        Ok(Window {
            source,
            next: serde_json::json!({ "changed_upto_ns": upto_ns }),
        })
    }
}

/// What the window makes of a listed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Selected {
    Read,
    Skip,
    Refuse,
}

/// A file a reader has listed, and its source once built.
struct Listed<S: SourceConfig> {
    shard: Shard<S>,
    refused: bool,
    built: tokio::sync::OnceCell<(Arc<S::Source>, String)>,
    /// When it was last looked up, in lookups of this reader.
    used: AtomicU64,
}

/// The built [`Files`] source.
pub struct FilesReader<S: SourceConfig> {
    config: Files<S>,
    /// The files listed so far, by key; forgotten past [`KEPT`].
    files: Mutex<HashMap<String, Arc<Listed<S>>>>,
    /// Lookups so far: the clock of [`Listed::used`].
    lookups: AtomicU64,
}

impl<S: ListInputs> FilesReader<S> {
    fn select(&self, times: Option<FileTimes>, key: &str) -> Result<Selected, ConnectorError> {
        let Some(window) = self.config.window else {
            return Ok(Selected::Read);
        };
        let Some(times) = times else {
            return Err(ConnectorError::config(format!(
                "`{}` listings carry no change times, so an incremental run cannot tell new files: run it without `sync`",
                S::NAME
            )));
        };
        let after = window.after_ns.unwrap_or(0);
        if times.changed_ns <= after || times.changed_ns > window.upto_ns {
            return Ok(Selected::Skip);
        }
        let loaded_before =
            window.after_ns.is_some() && times.created_ns.is_some_and(|c| c <= after);
        Ok(match (loaded_before, self.config.changed) {
            (false, _) => Selected::Read,
            (true, ChangedFiles::Reload) => {
                tracing::warn!(
                    file = key,
                    "changed since an earlier run loaded it: reloading it as a new version"
                );
                Selected::Read
            }
            (true, ChangedFiles::Refuse) => Selected::Refuse,
        })
    }

    fn remember(&self, shard: Shard<S>, refused: bool) -> Arc<Listed<S>> {
        let listed = Arc::new(Listed {
            shard,
            refused,
            built: tokio::sync::OnceCell::new(),
            used: AtomicU64::new(self.lookups.fetch_add(1, Ordering::Relaxed)),
        });
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        if files.len() >= KEPT {
            // The least recently used half: a file whose batch is being read was just used,
            // so its scope stays known until the batch is written.
            let mut used: Vec<u64> = files
                .values()
                .map(|f| f.used.load(Ordering::Relaxed))
                .collect();
            used.sort_unstable();
            let oldest_kept = used[used.len() / 2];
            files.retain(|_, f| f.used.load(Ordering::Relaxed) >= oldest_kept);
        }
        files.insert(listed.shard.key.clone(), listed.clone());
        listed
    }

    /// The next file to read after key `after` (the start when `None`), with the key listed
    /// before it; `None` past the last.
    async fn next_file(
        &self,
        mut after: Option<String>,
    ) -> Result<Option<(Option<String>, Arc<Listed<S>>)>, ConnectorError> {
        loop {
            let page = self
                .config
                .each
                .list_inputs(after.clone(), LIST_PAGE)
                .await?;
            for shard in page.shards {
                let before = after.replace(shard.key.clone());
                match self.select(shard.times, &shard.key)? {
                    Selected::Skip => {}
                    selected => {
                        let refused = selected == Selected::Refuse;
                        return Ok(Some((before, self.remember(shard, refused))));
                    }
                }
            }
            if !page.more {
                return Ok(None);
            }
        }
    }

    /// The file `key`, listed right after `after`: remembered, or listed again.
    async fn file(&self, after: Option<&str>, key: &str) -> Result<Arc<Listed<S>>, ConnectorError> {
        if let Some(listed) = self
            .files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
        {
            let now = self.lookups.fetch_add(1, Ordering::Relaxed);
            listed.used.store(now, Ordering::Relaxed);
            return Ok(listed.clone());
        }
        let page = self
            .config
            .each
            .list_inputs(after.map(str::to_owned), 1)
            .await?;
        match page.shards.into_iter().next() {
            Some(shard) if shard.key == key => {
                let refused = self.select(shard.times, key)? == Selected::Refuse;
                Ok(self.remember(shard, refused))
            }
            _ => Err(ConnectorError::batch(format!(
                "`{key}` is no longer listed: it was removed or renamed after the job planned it"
            ))),
        }
    }

    /// The built source of a file and its id scope, `<key>@<fingerprint of its version>`.
    async fn source_of(&self, listed: &Listed<S>) -> Result<Arc<S::Source>, ConnectorError> {
        let (source, _) = listed
            .built
            .get_or_try_init(|| async {
                let (source, scope) = listed.shard.build_scoped().await?;
                Ok::<_, ConnectorError>((Arc::new(source), scope))
            })
            .await
            .map_err(|e| e.context(format_args!("file `{}`", listed.shard.key)))?;
        Ok(source.clone())
    }
}

/// A range of a [`Files`] source as the range of its one file.
fn within_file<O: Offset>(range: &BatchRange<FileOffset<O>>) -> Option<BatchRange<O>> {
    Some(BatchRange {
        index: range.index,
        start: range.start.at.clone()?,
        end: range.end.at.clone()?,
        first_record: range.start.record,
        records: range.records,
    })
}

impl<S: ListInputs> Source for FilesReader<S> {
    type Record = S::Record;
    type Offset = FileOffset<S::Offset>;

    async fn plan(
        &self,
        from: Option<&Self::Offset>,
        batch_size: u64,
        max_batches: usize,
    ) -> Result<Plan<Self::Offset>, ConnectorError> {
        let mut batches = Vec::new();
        let mut current = match from {
            Some(o) => Some((
                o.after.clone(),
                self.file(o.after.as_deref(), &o.key).await?,
                o.record,
                o.at.clone(),
            )),
            None => self.next_file(None).await?.map(|(a, f)| (a, f, 0, None)),
        };
        while let Some((after, file, mut record, at)) = current.take() {
            let key = file.shard.key.clone();
            let offset = |record: u64, at: Option<S::Offset>, refused: bool| FileOffset {
                after: after.clone(),
                key: key.clone(),
                record,
                at,
                refused,
            };
            if file.refused {
                if record == 0 {
                    batches.push(PlannedBatch {
                        start: offset(0, None, true),
                        end: offset(1, None, true),
                        records: 1,
                    });
                }
            } else {
                let source = self.source_of(&file).await?;
                let plan = source
                    .plan(at.as_ref(), batch_size, max_batches - batches.len())
                    .await
                    .map_err(|e| e.context(format_args!("file `{key}`")))?;
                for b in plan.batches {
                    let end = record + b.records;
                    batches.push(PlannedBatch {
                        start: offset(record, Some(b.start), false),
                        end: offset(end, Some(b.end), false),
                        records: b.records,
                    });
                    record = end;
                }
                if !plan.end_of_source {
                    return Ok(Plan {
                        batches,
                        end_of_source: false,
                    });
                }
            }
            if batches.len() >= max_batches {
                // The next plan starts past this file's end, and moves on from there.
                return Ok(Plan {
                    batches,
                    end_of_source: false,
                });
            }
            current = self
                .next_file(Some(key.clone()))
                .await?
                .map(|(a, f)| (a, f, 0, None));
        }
        Ok(Plan {
            batches,
            end_of_source: true,
        })
    }

    async fn read(
        &self,
        range: &BatchRange<Self::Offset>,
    ) -> Result<ReadBatch<Self::Record>, ConnectorError> {
        let (start, end) = (&range.start, &range.end);
        if start.key != end.key {
            return Err(ConnectorError::batch(format!(
                "batch {} spans files `{}` and `{}`",
                range.index, start.key, end.key
            )));
        }
        let file = self.file(start.after.as_deref(), &start.key).await?;
        if start.refused {
            let mut read = ReadBatch::default();
            read.errors.push(RecordError::new(
                Position::at(start.record),
                format!(
                    "`{}` changed after an earlier run loaded it: not read again (`changed = \"refuse\"`); load it with a job of its own, or set `changed = \"reload\"`",
                    start.key
                ),
            ));
            return Ok(read);
        }
        let source = self.source_of(&file).await?;
        let Some(inner) = within_file(range) else {
            return Err(ConnectorError::batch(format!(
                "batch {} of `{}` has no offsets within the file",
                range.index, start.key
            )));
        };
        let mut read = source
            .read(&inner)
            .await
            .map_err(|e| e.context(format_args!("file `{}`", start.key)))?;
        for e in &mut read.errors {
            *e = RecordError::new(e.position, format!("in `{}`: {}", start.key, e.message));
        }
        Ok(read)
    }

    /// The file's key and the fingerprint of the version read: the ids a job over that file
    /// alone writes.
    fn scope(&self, range: &BatchRange<Self::Offset>) -> Option<(String, u64)> {
        let files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        let name = files
            .get(&range.start.key)
            .and_then(|f| f.built.get().map(|(_, scope)| scope.clone()))
            .unwrap_or_else(|| range.start.key.clone());
        Some((name, range.start.record))
    }

    async fn raw_records(
        &self,
        range: &BatchRange<Self::Offset>,
        records: &[u64],
    ) -> Result<Vec<(u64, Vec<u8>)>, ConnectorError> {
        let Some(inner) = within_file(range) else {
            return Ok(Vec::new());
        };
        let file = self
            .file(range.start.after.as_deref(), &range.start.key)
            .await?;
        self.source_of(&file)
            .await?
            .raw_records(&inner, records)
            .await
    }

    async fn is_current(&self) -> bool {
        let built: Vec<_> = self
            .files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter_map(|f| f.built.get().map(|(source, _)| source.clone()))
            .collect();
        for source in built {
            if !source.is_current().await {
                return false;
            }
        }
        true
    }
}
