//! Inputs read by byte range, shared by the line-based sources: the [`ByteInput`] trait, a
//! local file, and the [`LineOffset`] those sources resume from.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use crate::error::ConnectorError;

/// A resumable position in a line-based file (CSV, JSON Lines): the byte where a record
/// starts, and its line (from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LineOffset {
    /// Byte offset of the record.
    pub byte: u64,
    /// Line of the record, from 1.
    pub line: u64,
}

impl fmt::Display for LineOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "byte {} (line {})", self.byte, self.line)
    }
}

/// Random access to the bytes of an input: a local file or an object in a store. The
/// line-based sources (CSV, JSON Lines) read through it.
pub trait ByteInput: Send + Sync + 'static {
    /// The input's name for messages: a path or a URL.
    fn name(&self) -> &str;
    /// Its length in bytes.
    fn len(&self) -> u64;
    /// Whether it has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The bytes in `[start, end)`.
    fn read(
        &self,
        start: u64,
        end: u64,
    ) -> impl Future<Output = Result<Vec<u8>, ConnectorError>> + Send;
    /// Whether the input still holds the bytes it held when it was opened: `false` once it was
    /// written, truncated or replaced (or can no longer be looked at). The default, `true`,
    /// suits inputs that cannot change.
    fn is_current(&self) -> impl Future<Output = bool> + Send {
        async { true }
    }
    /// What tells this version of the input from another (a file's length and modification
    /// time, an object's etag), so a job id reused over a new input writes new record ids.
    /// `None` (the default) when the input cannot change.
    fn version(&self) -> Option<String> {
        None
    }
}

/// A local file read with positioned reads, so concurrent batches share one open file.
pub struct LocalFile {
    file: Arc<std::fs::File>,
    path: String,
    len: u64,
    stamp: FileStamp,
    /// Set when only a prefix is read, of a file that may grow meanwhile: the check of the
    /// prefix (see [`growing`](super::growing)).
    prefix_check: Option<String>,
}

/// What tells one version of a file from another: its length, modification time and inode.
/// A file written in place gets a new length or time; one replaced by a rename, a new inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    device: u64,
    inode: u64,
}

impl FileStamp {
    /// The length and modification time: what a new version of a file changes. The inode is
    /// left out, so the same bytes copied back in place read as the same version.
    pub(crate) fn version(&self) -> String {
        let modified = self
            .modified
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        format!("{}:{modified}", self.len)
    }

    pub(crate) fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            len: meta.len(),
            modified: meta.modified().ok(),
            device: meta.dev(),
            inode: meta.ino(),
        }
    }
}

impl LocalFile {
    /// Opens `path`; a missing file or a directory is a configuration error naming it.
    pub async fn open(path: &str) -> Result<Self, ConnectorError> {
        let owned = path.to_owned();
        let opened = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&owned)?;
            let meta = file.metadata()?;
            if meta.is_dir() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::IsADirectory,
                    "is a directory",
                ));
            }
            Ok((file, FileStamp::of(&meta)))
        })
        .await
        .map_err(|e| ConnectorError::transient(format!("cannot open {path}: {e}")))?;
        let (file, stamp) =
            opened.map_err(|e| ConnectorError::io(format!("cannot open {path}"), &e))?;
        Ok(Self {
            file: Arc::new(file),
            path: path.to_owned(),
            len: stamp.len,
            stamp,
            prefix_check: None,
        })
    }

    /// Opens the first `len` bytes of `path`, a file that may grow while they are read: it
    /// must still hold them (`check`, see [`growing`](super::growing)), or the error says the
    /// file was rewritten. Appending to it does not change this input.
    pub(crate) async fn open_prefix(
        path: &str,
        len: u64,
        check: &str,
    ) -> Result<Self, ConnectorError> {
        let mut file = Self::open(path).await?;
        let rewritten = || {
            ConnectorError::config(format!(
                "`{path}` was rewritten since this run pinned its window (bytes 0..{len}): start a new run, which reads it as a new file"
            ))
        };
        if file.len < len {
            return Err(rewritten());
        }
        file.len = len;
        if super::growing::check_of(&file, len).await? != check {
            return Err(rewritten());
        }
        file.prefix_check = Some(check.to_owned());
        Ok(file)
    }
}

impl ByteInput for LocalFile {
    fn name(&self) -> &str {
        &self.path
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn version(&self) -> Option<String> {
        match &self.prefix_check {
            Some(check) => Some(format!("{}:{check}", self.len)),
            None => Some(self.stamp.version()),
        }
    }

    async fn read(&self, start: u64, end: u64) -> Result<Vec<u8>, ConnectorError> {
        use std::os::unix::fs::FileExt;
        let file = self.file.clone();
        let size = end.saturating_sub(start) as usize;
        let read = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0; size];
            file.read_exact_at(&mut buf, start).map(|()| buf)
        })
        .await
        .map_err(|e| ConnectorError::transient(format!("{}: {e}", self.path)))?;
        read.map_err(|e| {
            ConnectorError::io(format!("{}: reading bytes {start}..{end}", self.path), &e)
        })
    }

    /// Stats the path again: the file is current while its length, modification time and
    /// inode are those seen at open; a prefix, while the inode is the same and the file no
    /// shorter.
    async fn is_current(&self) -> bool {
        let path = self.path.clone();
        let stamp = self.stamp;
        let now = tokio::task::spawn_blocking(move || std::fs::metadata(&path)).await;
        let Ok(Ok(meta)) = now else {
            return false;
        };
        let now = FileStamp::of(&meta);
        match self.prefix_check {
            Some(_) => {
                (now.device, now.inode) == (stamp.device, stamp.inode) && now.len >= self.len
            }
            None => now == stamp,
        }
    }
}
