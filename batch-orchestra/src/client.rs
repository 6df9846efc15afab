//! Connecting to Temporal: settings from a profile and the environment, with an explicit
//! override.

use temporalio_client::{Client, ClientOptions, Connection, ConnectionOptions, Url};

use crate::error::JobError;

/// Connects to the Temporal server at `address` (`127.0.0.1:7233` or
/// `http://127.0.0.1:7233`), in `namespace`.
pub async fn connect(address: &str, namespace: &str) -> Result<Client, JobError> {
    let url = address_url(address)
        .parse::<Url>()
        .map_err(|e| JobError::Settings(format!("bad Temporal address `{address}`: {e}")))?;
    let connection = Connection::connect(ConnectionOptions::new(url).build())
        .await
        .map_err(|e| {
            JobError::Temporal(format!(
                "cannot connect to Temporal at `{address}` ({}): is the server running, and is TEMPORAL_ADDRESS right?",
                root_message(&e)
            ))
        })?;
    let encryption = Encryption::from_env(None)?;
    Client::new(connection, encryption.client_options(namespace)).map_err(|e| {
        JobError::Temporal(format!(
            "cannot create a Temporal client for `{address}`: {e}"
        ))
    })
}

/// `address` as a URL: `host:port` is taken as `http://host:port`.
fn address_url(address: &str) -> String {
    if address.contains("://") {
        address.to_owned()
    } else {
        format!("http://{address}")
    }
}

/// The payload encryption of a connection: the keys from the environment
/// ([`encryption`](crate::encryption)), if any.
#[derive(Clone, Debug, Default)]
struct Encryption {
    #[cfg(feature = "encryption")]
    keys: Option<crate::encryption::Keyring>,
}

impl Encryption {
    /// The keys from `env` (else the process's environment); none without the feature.
    #[allow(unused_variables)]
    fn from_env(env: Option<&std::collections::HashMap<String, String>>) -> Result<Self, JobError> {
        #[cfg(feature = "encryption")]
        {
            let keys = crate::encryption::Keyring::from_vars(|name| match env {
                Some(env) => env.get(name).cloned(),
                None => std::env::var(name).ok(),
            })
            .map_err(|e| JobError::Settings(e.to_string()))?;
            Ok(Self { keys })
        }
        #[cfg(not(feature = "encryption"))]
        Ok(Self {})
    }

    fn client_options(&self, namespace: &str) -> ClientOptions {
        #[cfg(feature = "encryption")]
        if let Some(keys) = &self.keys {
            return ClientOptions::new(namespace.to_owned())
                .data_converter(keys.data_converter())
                .build();
        }
        ClientOptions::new(namespace.to_owned()).build()
    }
}

/// Connects the way the `temporal` CLI and Temporal's SDKs do: the profile named by
/// `TEMPORAL_PROFILE` (else `default`) from the config file named by `TEMPORAL_CONFIG_FILE`
/// (else `~/.config/temporalio/temporal.toml`, if it exists), overridden by the variables
/// `TEMPORAL_ADDRESS` (default `127.0.0.1:7233`), `TEMPORAL_NAMESPACE` (default `default`),
/// `TEMPORAL_API_KEY`, `TEMPORAL_TLS`, `TEMPORAL_TLS_CLIENT_CERT_PATH`,
/// `TEMPORAL_TLS_CLIENT_KEY_PATH`, `TEMPORAL_TLS_SERVER_CA_CERT_PATH`,
/// `TEMPORAL_TLS_SERVER_NAME` and `TEMPORAL_GRPC_META_*`. An API key or a TLS setting turns TLS
/// on, as for Temporal Cloud.
///
/// A setting that cannot be used (an unknown profile, a file that does not parse, a missing
/// certificate) is a [`JobError::Temporal`] naming it.
pub async fn connect_from_env() -> Result<Client, JobError> {
    connect_profile(None).await
}

/// Like [`connect_from_env`], with the profile `profile` of the config file instead of
/// `TEMPORAL_PROFILE`'s.
pub async fn connect_profile(profile: Option<&str>) -> Result<Client, JobError> {
    let settings = TemporalSettings::resolve(profile, None)?;
    settings.connect().await
}

/// Resolved Temporal connection settings: a profile of the config file with the environment
/// applied, as [`connect_from_env`] uses them. Its `Debug` output leaves out the API key and
/// the TLS material.
#[derive(Clone)]
pub struct TemporalSettings {
    profile: temporalio_client::envconfig::ClientConfigProfile,
    /// The server's address (`host:port` or a URL).
    pub address: String,
    /// The namespace.
    pub namespace: String,
    /// Whether the connection uses TLS.
    pub tls: bool,
    /// Whether an API key is sent.
    pub api_key: bool,
    encryption: Encryption,
}

impl TemporalSettings {
    /// Resolves the settings from `profile` (or `TEMPORAL_PROFILE`) and the environment;
    /// `env` replaces the process's variables when given (for tests).
    pub fn resolve(
        profile: Option<&str>,
        env: Option<&std::collections::HashMap<String, String>>,
    ) -> Result<Self, JobError> {
        use temporalio_client::envconfig::LoadClientConfigProfileOptions;
        let options = LoadClientConfigProfileOptions::builder()
            .maybe_config_file_profile(profile.map(str::to_owned))
            .build();
        let mut loaded = temporalio_common::envconfig::load_client_config_profile(options, env)
            .map_err(|e| JobError::Settings(settings_error(profile, env, &e)))?;
        let address = loaded
            .address
            .get_or_insert_with(|| DEFAULT_ADDRESS.to_owned())
            .clone();
        if let Err(e) = address_url(&address).parse::<Url>() {
            return Err(JobError::Settings(format!(
                "the address `{address}` (TEMPORAL_ADDRESS or the profile's `address`) is not a host:port or URL: {e}"
            )));
        }
        let namespace = loaded
            .namespace
            .get_or_insert_with(|| DEFAULT_NAMESPACE.to_owned())
            .clone();
        let api_key = loaded.api_key.is_some();
        let tls = match &loaded.tls {
            Some(t) => t.disabled != Some(true),
            None => api_key,
        };
        let encryption = Encryption::from_env(env)?;
        Ok(Self {
            profile: loaded,
            address,
            namespace,
            tls,
            api_key,
            encryption,
        })
    }

    /// Encrypts payloads with `keys` instead of the keys of the environment.
    #[cfg(feature = "encryption")]
    pub fn with_encryption(mut self, keys: crate::encryption::Keyring) -> Self {
        self.encryption.keys = Some(keys);
        self
    }

    /// The id of the key payloads are encrypted with, when they are.
    #[cfg(feature = "encryption")]
    pub fn encryption_key_id(&self) -> Option<&str> {
        self.encryption.keys.as_ref().map(|k| k.current_id())
    }

    /// Connects with these settings.
    pub async fn connect(&self) -> Result<Client, JobError> {
        let address = &self.address;
        let options = ConnectionOptions::try_from(self.profile.clone())
            .map_err(|e| JobError::Settings(e.to_string()))?;
        let connection = Connection::connect(options).await.map_err(|e| {
            JobError::Temporal(format!(
                "cannot connect to Temporal at `{address}` ({}): is the server running, and is TEMPORAL_ADDRESS right?",
                root_message(&e)
            ))
        })?;
        Client::new(connection, self.encryption.client_options(&self.namespace)).map_err(|e| {
            JobError::Temporal(format!(
                "cannot create a Temporal client for `{address}`: {e}"
            ))
        })
    }
}

impl std::fmt::Debug for TemporalSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemporalSettings")
            .field("address", &self.address)
            .field("namespace", &self.namespace)
            .field("tls", &self.tls)
            .field("api_key", &self.api_key)
            .finish_non_exhaustive()
    }
}

const DEFAULT_ADDRESS: &str = "127.0.0.1:7233";
const DEFAULT_NAMESPACE: &str = "default";

/// Names where a bad setting came from: the profile and the file.
fn settings_error(
    profile: Option<&str>,
    env: Option<&std::collections::HashMap<String, String>>,
    e: &temporalio_client::envconfig::ConfigError,
) -> String {
    let var = |k: &str| match env {
        Some(map) => map.get(k).cloned(),
        None => std::env::var(k).ok(),
    };
    let file = var("TEMPORAL_CONFIG_FILE")
        .filter(|f| !f.is_empty())
        .map(|f| format!("`{f}` (TEMPORAL_CONFIG_FILE)"))
        .unwrap_or_else(|| "`~/.config/temporalio/temporal.toml`".to_owned());
    let profile = profile
        .map(|p| format!("`{p}`"))
        .or_else(|| var("TEMPORAL_PROFILE").map(|p| format!("`{p}` (TEMPORAL_PROFILE)")))
        .unwrap_or_else(|| "`default`".to_owned());
    let mut cause = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    format!(
        "Temporal connection settings, profile {profile} of {file} and the TEMPORAL_* variables: {cause}"
    )
}

/// The deepest message of an error's source chain: the transport's own words, without the
/// wrappers' `Debug` text.
fn root_message(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn settings_come_from_a_profile_of_the_config_file_then_the_variables() {
        let dir = std::env::temp_dir().join(format!("bo-profiles-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("temporal.toml");
        std::fs::write(
            &file,
            "[profile.default]\naddress = \"127.0.0.1:1111\"\nnamespace = \"ns-default\"\n\n\
             [profile.cloud]\naddress = \"127.0.0.1:7234\"\nnamespace = \"prod\"\napi_key = \"fake-key\"\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();

        let s =
            TemporalSettings::resolve(None, Some(&env(&[("TEMPORAL_CONFIG_FILE", path)]))).unwrap();
        assert_eq!(
            (s.address.as_str(), s.namespace.as_str()),
            ("127.0.0.1:1111", "ns-default")
        );
        assert!(!s.tls && !s.api_key);

        // A named profile; an API key turns TLS on, as for Temporal Cloud.
        let s =
            TemporalSettings::resolve(Some("cloud"), Some(&env(&[("TEMPORAL_CONFIG_FILE", path)])))
                .unwrap();
        assert_eq!(
            (s.address.as_str(), s.namespace.as_str()),
            ("127.0.0.1:7234", "prod")
        );
        assert!(s.tls && s.api_key);

        // TEMPORAL_PROFILE picks the profile; variables override its values.
        let s = TemporalSettings::resolve(
            None,
            Some(&env(&[
                ("TEMPORAL_CONFIG_FILE", path),
                ("TEMPORAL_PROFILE", "cloud"),
                ("TEMPORAL_NAMESPACE", "override"),
                ("TEMPORAL_TLS", "false"),
            ])),
        )
        .unwrap();
        assert_eq!(
            (s.address.as_str(), s.namespace.as_str()),
            ("127.0.0.1:7234", "override")
        );
        assert!(!s.tls);

        // No file, no variables: the local dev server.
        let missing = dir.join("missing.toml");
        let s = TemporalSettings::resolve(
            None,
            Some(&env(&[("TEMPORAL_CONFIG_FILE", missing.to_str().unwrap())])),
        )
        .unwrap();
        assert_eq!(
            (s.address.as_str(), s.namespace.as_str()),
            ("127.0.0.1:7233", "default")
        );
        let s = TemporalSettings::resolve(
            None,
            Some(&env(&[
                ("TEMPORAL_CONFIG_FILE", missing.to_str().unwrap()),
                ("TEMPORAL_ADDRESS", "127.0.0.1:9999"),
            ])),
        )
        .unwrap();
        assert_eq!(s.address, "127.0.0.1:9999");

        // An unknown profile names the profile and the file.
        let err = TemporalSettings::resolve(
            Some("staging"),
            Some(&env(&[("TEMPORAL_CONFIG_FILE", path)])),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("`staging`") && err.contains(path), "{err}");

        // A file that does not parse names the file and the line.
        std::fs::write(&file, "[profile.default\naddress = 1\n").unwrap();
        let err = TemporalSettings::resolve(None, Some(&env(&[("TEMPORAL_CONFIG_FILE", path)])))
            .unwrap_err()
            .to_string();
        assert!(err.contains(path) && err.contains("line 1"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn an_unreachable_server_is_named_in_one_readable_sentence() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let Err(err) = connect(&format!("127.0.0.1:{port}"), "default").await else {
            panic!("nothing listens there")
        };
        let text = err.to_string();
        assert!(
            text.contains(&format!("cannot connect to Temporal at `127.0.0.1:{port}`")),
            "{text}"
        );
        assert!(text.contains("is the server running"), "{text}");
        assert!(
            !text.contains("Error {") && !text.contains("kind:"),
            "no Debug text: {text}"
        );
    }
}
