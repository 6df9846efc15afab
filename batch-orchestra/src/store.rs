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
