//! Object stores from URLs: S3 (`s3://`), GCS (`gs://`), Azure (`az://`) and local files
//! (`file://`), with credentials from the worker's environment only.

use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path;

use crate::error::ConnectorError;

/// Option keys that would put a secret into workflow history.
const SECRET_WORDS: [&str; 7] = [
    "secret",
    "password",
    "token",
    "key",
    "sas",
    "credential",
    "signature",
];

pub(crate) fn bad_url(url: &str, why: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::config(format!("bad object URL `{url}`: {why}"))
}

/// Builds the store for `url` from the worker's environment and the request's options.
pub(crate) fn store_for(
    url: &str,
    options: &BTreeMap<String, String>,
) -> Result<(Arc<dyn ObjectStore>, Path), ConnectorError> {
    for key in options.keys() {
        if SECRET_WORDS
            .iter()
            .any(|w| key.to_ascii_lowercase().contains(w))
        {
            return Err(ConnectorError::config(format!(
                "`{url}`: the option `{key}` looks like a credential; credentials come from the worker's environment, never from the job request"
            )));
        }
    }
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad_url(url, "expected s3://, gs://, az:// or file://"))?;
    let option_error =
        |key: &str, e: object_store::Error| bad_url(url, format!("option `{key}`: {e}"));
    // The key after the bucket; empty for a bare bucket URL.
    let key_path = |rest: &str| -> Result<Path, ConnectorError> {
        let key = rest.split_once('/').map_or("", |(_, key)| key);
        Path::parse(key).map_err(|e| bad_url(url, e))
    };
    let store: Arc<dyn ObjectStore> = match scheme {
        "s3" => {
            let mut b = object_store::aws::AmazonS3Builder::from_env().with_url(url);
            for (k, v) in options {
                b = b.with_config(k.parse().map_err(|e| option_error(k, e))?, v);
            }
            Arc::new(b.build().map_err(|e| bad_url(url, e))?)
        }
        "gs" => {
            let mut b = object_store::gcp::GoogleCloudStorageBuilder::from_env().with_url(url);
            for (k, v) in options {
                b = b.with_config(k.parse().map_err(|e| option_error(k, e))?, v);
            }
            Arc::new(b.build().map_err(|e| bad_url(url, e))?)
        }
        "az" | "azure" | "abfs" | "abfss" => {
            let mut b = object_store::azure::MicrosoftAzureBuilder::from_env().with_url(url);
            for (k, v) in options {
                b = b.with_config(k.parse().map_err(|e| option_error(k, e))?, v);
            }
            Arc::new(b.build().map_err(|e| bad_url(url, e))?)
        }
        "file" => {
            let path = Path::from_filesystem_path(rest).map_err(|e| bad_url(url, e))?;
            return Ok((Arc::new(object_store::local::LocalFileSystem::new()), path));
        }
        other => {
            return Err(bad_url(
                url,
                format!("unknown scheme `{other}`; expected s3, gs, az or file"),
            ));
        }
    };
    Ok((store, key_path(rest)?))
}

/// Missing objects and refused credentials are configuration errors; the rest is retried.
pub(crate) fn classify(url: &str, e: object_store::Error) -> ConnectorError {
    use object_store::Error as E;
    match e {
        E::NotFound { .. } => ConnectorError::config(format!("{url}: no such object")),
        E::PermissionDenied { .. } | E::Unauthenticated { .. } | E::InvalidPath { .. } => {
            ConnectorError::config(format!("{url}: {e}"))
        }
        e => ConnectorError::transient(format!("{url}: {e}")),
    }
}

/// Bytes `range` of the object at `path`, only from the version tagged `etag` when the
/// store gave one (`if-match`): an object replaced since it was opened is a batch error
/// naming it, never other bytes read at the planned offsets.
pub(crate) async fn read_pinned(
    store: &dyn object_store::ObjectStore,
    path: &object_store::path::Path,
    url: &str,
    range: std::ops::Range<u64>,
    etag: Option<&str>,
) -> Result<bytes::Bytes, ConnectorError> {
    let options = object_store::GetOptions::new()
        .with_range(Some(range))
        .with_if_match(etag.map(str::to_owned));
    let read = async { store.get_opts(path, options).await?.bytes().await };
    read.await.map_err(|e| match e {
        object_store::Error::Precondition { .. } => replaced(url),
        e => classify(url, e),
    })
}

/// The batch error of an object replaced while a job reads it.
pub(crate) fn replaced(url: &str) -> ConnectorError {
    ConnectorError::batch(format!(
        "{url}: the object was replaced since the job opened it (its etag changed), so the planned offsets would read other records; start a new job over the new object"
    ))
}

/// An object found by [`list_objects`].
pub(crate) struct ListedObject {
    /// Its name after the pattern's literal prefix.
    pub key: String,
    /// Its URL.
    pub url: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// When it was last written, in nanoseconds since the Unix epoch, as the store says.
    pub modified_ns: u64,
}

/// The objects matching `url` (a glob such as `s3://bucket/in/**/*.csv`, or one object's
/// URL) whose keys come after `after`, in ascending order of key, at most `limit` and one
/// more (to tell whether more follow). A pattern that matches nothing is a configuration
/// error naming it.
pub(crate) async fn list_objects(
    url: &str,
    options: &BTreeMap<String, String>,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<ListedObject>, ConnectorError> {
    use crate::connector::listing::{MATCH, is_pattern, literal_base, nothing_matches, pattern};
    use futures::TryStreamExt;

    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let (base, glob) = if is_pattern(url) {
        let base = literal_base(url);
        (base, &url[(base.len() + 1).min(url.len())..])
    } else {
        // One object: list its exact name.
        let slash = url.rfind('/').unwrap_or(url.len());
        (&url[..slash], &url[(slash + 1).min(url.len())..])
    };
    if base.len() <= scheme_end {
        return Err(bad_url(url, "no bucket before the pattern"));
    }
    let matcher = pattern(glob)?;
    let (store, prefix) = store_for(base, options)?;
    let prefix_text = prefix.as_ref().to_owned();
    let relative = |location: &Path| -> Option<String> {
        let full = location.as_ref();
        let key = if prefix_text.is_empty() {
            full
        } else {
            full.strip_prefix(prefix_text.as_str())?.strip_prefix('/')?
        };
        Some(key.to_owned())
    };
    let prefix_opt = (!prefix_text.is_empty()).then_some(&prefix);
    // Cloud stores list in ascending key order, so a page stops early; a local directory
    // does not promise an order, so it is listed whole and sorted.
    let ordered = !url.starts_with("file://");
    let mut stream = match after {
        Some(after) => {
            // Listed keys are raw (not percent-encoded): so is the offset, or a key with `#`
            // or `%` would sort elsewhere and skip inputs.
            let text = if prefix_text.is_empty() {
                after.to_owned()
            } else {
                format!("{prefix_text}/{after}")
            };
            let offset = Path::parse(&text).unwrap_or_else(|_| Path::from(text.as_str()));
            store.list_with_offset(prefix_opt, &offset)
        }
        None => store.list(prefix_opt),
    };
    let mut found = Vec::new();
    while let Some(meta) = stream.try_next().await.map_err(|e| classify(url, e))? {
        let Some(key) = relative(&meta.location) else {
            continue;
        };
        if after.is_some_and(|a| key.as_str() <= a) || !matcher.matches_with(&key, MATCH) {
            continue;
        }
        found.push(ListedObject {
            url: format!("{base}/{key}"),
            key,
            bytes: meta.size,
            modified_ns: meta
                .last_modified
                .timestamp_nanos_opt()
                .map_or(0, |ns| ns.max(0) as u64),
        });
        if ordered && found.len() > limit {
            break;
        }
    }
    if found.is_empty() && after.is_none() {
        return Err(nothing_matches(url));
    }
    found.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    found.truncate(limit.saturating_add(1));
    Ok(found)
}
