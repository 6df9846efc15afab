//! The codec server: the HTTP endpoint Temporal's web UI and CLI call to show encrypted
//! payloads in clear (Temporal's remote codec protocol). `POST <prefix>/decode` and
//! `POST <prefix>/encode` take and return `{"payloads": [{"metadata": {..}, "data": ".."}]}`
//! (values in base64); a browser's preflight `OPTIONS` is answered for the allowed origins.
//! With a token, every call must send `Authorization: Bearer <token>`.
//!
//! Point the UI at it (Settings, Codec Server: `http://127.0.0.1:8089`, "pass access token"
//! when a token is set), or the CLI: `temporal workflow show --codec-endpoint
//! http://127.0.0.1:8089 ...`. Bind it to loopback or put it behind TLS: it decrypts for
//! anyone who can reach it and passes its token check.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ORIGIN};
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use temporalio_common::protos::temporal::api::common::v1::Payload;
use tokio::net::TcpListener;

use super::Keyring;

/// The largest request body taken (16 MiB): a history's payloads come in pages.
const MAX_BODY: usize = 16 << 20;

/// Who may call the codec server.
#[derive(Debug, Clone, Default)]
pub struct CodecServerOptions {
    /// Browser origins allowed to call it (the web UI's, such as `http://127.0.0.1:8233`
    /// or `https://cloud.temporal.io`); others get no CORS headers.
    pub origins: Vec<String>,
    /// The bearer token every call must carry, when set.
    pub token: Option<String>,
}

/// A running codec server.
pub struct CodecServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl CodecServer {
    /// Serves on `listener` until dropped.
    pub fn start(listener: TcpListener, keys: Keyring, options: CodecServerOptions) -> Self {
        let addr = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let task = tokio::spawn(serve(listener, keys, options));
        Self { addr, task }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL, `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for CodecServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves the codec protocol on `listener` forever.
pub async fn serve(listener: TcpListener, keys: Keyring, options: CodecServerOptions) {
    let state = Arc::new((keys, options));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let state = state.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(handle(request, &state.0, &state.1).await)
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

/// Payloads as the codec protocol writes them: metadata values and data in base64.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct JsonPayloads {
    /// The payloads.
    #[serde(default)]
    pub payloads: Vec<JsonPayload>,
}

/// One payload of [`JsonPayloads`].
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct JsonPayload {
    /// Metadata, values in base64.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Data in base64.
    #[serde(default)]
    pub data: String,
}

impl JsonPayload {
    /// The payload in the protocol's JSON form.
    pub fn from_payload(payload: &Payload) -> Self {
        let b64 = base64::engine::general_purpose::STANDARD;
        Self {
            metadata: payload
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), b64.encode(v)))
                .collect(),
            data: b64.encode(&payload.data),
        }
    }

    /// The payload, or what in it is not base64.
    pub fn to_payload(&self) -> Result<Payload, String> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut metadata = HashMap::new();
        for (k, v) in &self.metadata {
            let v = b64
                .decode(v)
                .map_err(|_| format!("metadata `{k}` is not base64"))?;
            metadata.insert(k.clone(), v);
        }
        let data = b64
            .decode(&self.data)
            .map_err(|_| "`data` is not base64".to_owned())?;
        Ok(Payload {
            metadata,
            data,
            ..Default::default()
        })
    }
}

async fn handle(
    request: Request<Incoming>,
    keys: &Keyring,
    options: &CodecServerOptions,
) -> Response<Full<Bytes>> {
    let origin = request
        .headers()
        .get(ORIGIN)
        .and_then(|o| o.to_str().ok())
        .filter(|o| options.origins.iter().any(|allowed| allowed == o))
        .map(str::to_owned);
    let mut response = respond(request, keys, options).await;
    if let Some(origin) = origin {
        let headers = response.headers_mut();
        let mut set = |name: &'static str, value: &str| {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(name, value);
            }
        };
        set("access-control-allow-origin", &origin);
        set("access-control-allow-credentials", "true");
        set("access-control-allow-methods", "POST, OPTIONS");
        set(
            "access-control-allow-headers",
            "content-type, authorization, x-namespace",
        );
        set("vary", "origin");
    }
    response
}

async fn respond(
    request: Request<Incoming>,
    keys: &Keyring,
    options: &CodecServerOptions,
) -> Response<Full<Bytes>> {
    if request.method() == Method::OPTIONS {
        return reply(StatusCode::OK, Bytes::new());
    }
    let path = request.uri().path().trim_end_matches('/').to_owned();
    let encode = path.ends_with("/encode");
    if request.method() != Method::POST || !(encode || path.ends_with("/decode")) {
        return error(StatusCode::NOT_FOUND, "POST /encode or /decode");
    }
    if let Some(token) = &options.token {
        let sent = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if sent != Some(token.as_str()) {
            return error(StatusCode::UNAUTHORIZED, "a bearer token is required");
        }
    }
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("the body: {e}")),
    };
    let input: JsonPayloads = match serde_json::from_slice(&body) {
        Ok(input) => input,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("not codec JSON: {e}")),
    };
    let mut out = JsonPayloads::default();
    for payload in &input.payloads {
        let payload = match payload.to_payload() {
            Ok(p) => p,
            Err(e) => return error(StatusCode::BAD_REQUEST, &e),
        };
        let converted = if encode {
            keys.encrypt(&payload)
        } else {
            keys.decrypt(payload)
        };
        match converted {
            Ok(p) => out.payloads.push(JsonPayload::from_payload(&p)),
            Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
        }
    }
    let body = serde_json::to_vec(&out).unwrap_or_default();
    let mut response = reply(StatusCode::OK, Bytes::from(body));
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    response
}

fn reply(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    reply(status, Bytes::from(message.to_owned()))
}
