//! What a source that stands for many inputs lists (the capability sharded jobs use): its
//! inputs, a page at a time, and the listing of local files by glob.

use serde::{Deserialize, Serialize};
use std::future::Future;

use super::SourceConfig;
use crate::error::ConnectorError;

/// A source whose config stands for many inputs (a glob, a prefix): a sharded job lists them
/// and runs one child job per input.
///
/// `#[batch_source(name = "...", reader = MyReader, shards = list)]` implements it with the
/// config's own `list` method; [`list_files`] does the work for local files. A source without
/// it can still be sharded over an explicit list of inputs.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot list its inputs",
    label = "lists no inputs",
    note = "add `shards = list` to `#[batch_source(...)]` with an `async fn list(&self, after: Option<String>, limit: usize) -> Result<ShardPage<Self>, ConnectorError>`, or implement `batch_orchestra::connector::ListInputs` for it"
)]
pub trait ListInputs: SourceConfig {
    /// Lists up to `limit` inputs whose keys come after `after` (from the first when `None`),
    /// in ascending order of key, each with the config that reads it alone. A listing that
    /// matches nothing at all is a configuration error naming the pattern.
    fn list_inputs(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> impl Future<Output = Result<ShardPage<Self>, ConnectorError>> + Send;
}

/// A page of the files `pattern` matches after `after` (see [`list_local`]), each read by the
/// config `source` makes of its path: the listing of a file source, off the async runtime's
/// threads.
pub async fn list_files<S>(
    pattern: &str,
    after: Option<String>,
    limit: usize,
    source: impl Fn(String) -> S,
) -> Result<ShardPage<S>, ConnectorError> {
    let owned = pattern.to_owned();
    let files = tokio::task::spawn_blocking(move || list_local(&owned, after.as_deref(), limit))
        .await
        .map_err(|e| ConnectorError::transient(format!("listing `{pattern}`: {e}")))??;
    Ok(ShardPage::of_files(files, limit, source))
}

/// Whether `path` is a glob pattern (`*`, `?` or `[`) rather than one input's name.
///
/// ```
/// use batch_orchestra::connector::listing::is_pattern;
///
/// assert!(is_pattern("data/**/*.csv"));
/// assert!(!is_pattern("data/people.csv"));
/// ```
pub fn is_pattern(path: &str) -> bool {
    path.contains(['*', '?', '['])
}

/// The glob options of every listing: `*` and `?` stay within one path segment, `**` crosses
/// them, and names starting with a dot match only a pattern that says so.
pub(crate) const MATCH: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: true,
};

/// Parses a glob pattern, naming it in the error.
pub(crate) fn pattern(pattern: &str) -> Result<glob::Pattern, ConnectorError> {
    glob::Pattern::new(pattern)
        .map_err(|e| ConnectorError::config(format!("bad glob pattern `{pattern}`: {e}")))
}

/// The error for a pattern that matches nothing.
pub(crate) fn nothing_matches(pattern: &str) -> ConnectorError {
    ConnectorError::config(format!(
        "no input matches `{pattern}`: check the directory or prefix and the pattern (`*` stays within one directory, `**` crosses them)"
    ))
}

/// A file found by [`list_local`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ListedFile {
    /// Its key: the path after the pattern's literal directory (`2026/11/a.csv` for
    /// `exports/**/*.csv`), or the file's name for a plain path.
    pub key: String,
    /// Its path, as the pattern spells it.
    pub path: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// When it was created and last changed, where the file system says.
    pub times: Option<FileTimes>,
}

/// When a file was created and when its content, name or status last changed (its `ctime`,
/// which a copy, a rename or a write sets to the moment it happens and nothing sets back):
/// what an incremental listing tells new and changed files by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileTimes {
    /// The last change, in nanoseconds since the Unix epoch.
    pub changed_ns: u64,
    /// The creation (birth) time, in nanoseconds since the Unix epoch, where the file system
    /// records it.
    pub created_ns: Option<u64>,
}

impl FileTimes {
    /// The times of a file's metadata.
    pub fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        let ns = |secs: i64, nanos: i64| (secs.max(0) as u64) * 1_000_000_000 + nanos.max(0) as u64;
        let created_ns = meta
            .created()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos() as u64);
        Self {
            changed_ns: ns(meta.ctime(), meta.ctime_nsec()),
            created_ns,
        }
    }
}

/// The literal directory a pattern starts with: the path before its first segment with a
/// glob character (`exports` for `exports/**/*.csv`), without the slash.
pub(crate) fn literal_base(pattern: &str) -> &str {
    let first_glob = pattern.find(['*', '?', '[']).unwrap_or(pattern.len());
    pattern[..first_glob]
        .rfind('/')
        .map_or("", |slash| &pattern[..slash])
}

/// The files matching `pattern` (a glob, or one file's path) whose keys come after `after`,
/// in ascending order of key, at most `limit` and one more (to tell whether more follow).
///
/// A pattern that matches nothing at all is a configuration error naming it; so is a plain
/// path that does not exist.
pub fn list_local(
    pattern_text: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<ListedFile>, ConnectorError> {
    if !is_pattern(pattern_text) {
        let meta = std::fs::metadata(pattern_text)
            .map_err(|e| ConnectorError::io(format_args!("cannot read `{pattern_text}`"), &e))?;
        let key = pattern_text.rsplit('/').next().unwrap_or(pattern_text);
        let past = after.is_some_and(|a| a >= key);
        return Ok(if past {
            Vec::new()
        } else {
            vec![ListedFile {
                key: key.to_owned(),
                path: pattern_text.to_owned(),
                bytes: meta.len(),
                times: Some(FileTimes::of(&meta)),
            }]
        });
    }
    let base = literal_base(pattern_text);
    pattern(pattern_text)?;
    let paths = glob::glob_with(pattern_text, MATCH)
        .map_err(|e| ConnectorError::config(format!("bad glob pattern `{pattern_text}`: {e}")))?;
    let mut files = Vec::new();
    for entry in paths {
        let path = entry.map_err(|e| {
            ConnectorError::io(
                format_args!("listing `{pattern_text}` at `{}`", e.path().display()),
                e.error(),
            )
        })?;
        let Ok(meta) = std::fs::metadata(&path) else {
            // Gone since the directory was read: the next listing will not see it either.
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let Some(name) = path.to_str() else {
            return Err(ConnectorError::config(format!(
                "`{}` matches `{pattern_text}` but its name is not UTF-8",
                path.display()
            )));
        };
        let key = name
            .strip_prefix(base)
            .map_or(name, |k| k.trim_start_matches('/'));
        files.push(ListedFile {
            key: key.to_owned(),
            path: name.to_owned(),
            bytes: meta.len(),
            times: Some(FileTimes::of(&meta)),
        });
    }
    if files.is_empty() && after.is_none() {
        return Err(nothing_matches(pattern_text));
    }
    files.sort_unstable();
    let start = after.map_or(0, |a| files.partition_point(|f| f.key.as_str() <= a));
    let end = start
        .saturating_add(limit.saturating_add(1))
        .min(files.len());
    Ok(files[start..end].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_literal_base_is_the_directory_before_the_first_glob() {
        assert_eq!(literal_base("exports/**/*.csv"), "exports");
        assert_eq!(literal_base("/data/in/2026-*/x.csv"), "/data/in");
        assert_eq!(literal_base("*.csv"), "");
    }

    #[test]
    fn pages_through_matching_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.csv", "a.csv", "c.txt", "sub/d.csv", "sub/deep/e.csv"] {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, "x\n").unwrap();
        }
        let root = dir.path().to_str().unwrap();
        let top = format!("{root}/*.csv");
        let names = |v: Vec<ListedFile>| -> Vec<String> {
            v.into_iter()
                .map(|f| {
                    assert_eq!(f.path, format!("{root}/{}", f.key));
                    f.key
                })
                .collect()
        };
        assert_eq!(
            names(list_local(&top, None, 10).unwrap()),
            ["a.csv", "b.csv"]
        );
        let all = format!("{root}/**/*.csv");
        let first = list_local(&all, None, 2).unwrap();
        assert_eq!(names(first.clone()), ["a.csv", "b.csv", "sub/d.csv"]);
        let rest = list_local(&all, Some(&first[1].key), 2).unwrap();
        assert_eq!(names(rest), ["sub/d.csv", "sub/deep/e.csv"]);
        let none = format!("{root}/*.parquet");
        let err = list_local(&none, None, 2).unwrap_err();
        assert!(err.to_string().contains("*.parquet"), "{err}");
        let bad = list_local(&format!("{root}/[.csv"), None, 2).unwrap_err();
        assert!(bad.to_string().contains("bad glob pattern"), "{bad}");
    }
}

/// One input of a source that stands for many (a sharded job's): a file or an object, with the config that reads it alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shard<S> {
    /// The input's name, unique within the listing and stable across listings (a path or an
    /// object key). Listings are in ascending order of keys. The child job's id is
    /// `<job id>/<key>`, so sink ids derived from it stay the same for a rerun.
    pub key: String,
    /// The config that reads this input alone.
    pub source: S,
    /// The input's size in bytes, where the listing knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// When the input was created and last changed, where the listing knows it: what an
    /// incremental [`Files`](crate::connectors::files::Files) source selects by. Used
    /// where it was listed, never carried in a payload.
    #[serde(skip)]
    pub times: Option<FileTimes>,
}

impl<S: SourceConfig> Shard<S> {
    /// Builds this input's source, with the id scope its records are written under:
    /// `<key>@<fingerprint of its version>`, so a listing that finds new content under an old
    /// name writes new ids.
    pub(crate) async fn build_scoped(&self) -> Result<(S::Source, String), ConnectorError> {
        use super::Source as _;
        let source = self.source.build().await?;
        let fingerprint = super::input_fingerprint(&self.source, source.identity());
        Ok((source, format!("{}@{fingerprint}", self.key)))
    }
}

impl<S> Shard<S> {
    /// The input `key`, read by `source`.
    pub fn new(key: impl Into<String>, source: S) -> Self {
        Self {
            key: key.into(),
            source,
            bytes: None,
            times: None,
        }
    }
}

/// One page of a listing, in ascending order of keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardPage<S> {
    /// The inputs, at most the page size asked for.
    pub shards: Vec<Shard<S>>,
    /// True when inputs follow the last one of this page.
    pub more: bool,
}

impl<S> ShardPage<S> {
    /// A page of the files [`list_local`] found, each read by the config `source` makes of
    /// its path.
    pub fn of_files(files: Vec<ListedFile>, limit: usize, source: impl Fn(String) -> S) -> Self {
        let shards = files
            .into_iter()
            .map(|f| Shard {
                key: f.key,
                source: source(f.path),
                bytes: Some(f.bytes),
                times: f.times,
            })
            .collect();
        Self::from_sorted(shards, limit)
    }

    /// A page from a sorted listing that was asked for `limit` inputs and found up to one
    /// more (which only says that more follow).
    pub fn from_sorted(mut shards: Vec<Shard<S>>, limit: usize) -> Self {
        let more = shards.len() > limit;
        shards.truncate(limit);
        Self { shards, more }
    }
}
