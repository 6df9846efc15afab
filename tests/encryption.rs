//! Payload encryption on a real dev server: an encrypted job's raw history holds none of its
//! config strings or error messages, clients with the key read its report, a client without
//! the key gets an error naming the key, a rotated keyring still reads old jobs, and the codec
//! server (direct calls and the `temporal` CLI) shows the history in clear.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::Duration;

use base64::Engine;
use batch_orchestra::client::TemporalSettings;
use batch_orchestra::connectors::csv::{CsvFile, CsvRow};
use batch_orchestra::connectors::noop::NoopSink;
use batch_orchestra::encryption::server::{CodecServer, CodecServerOptions, JsonPayload};
use batch_orchestra::encryption::{KEYS_ENV, Keyring};
use batch_orchestra::testing::TemporalDevServer;
use batch_orchestra::{JobClient, JobError, Worker, pipeline};
use batch_orchestra_tests::{history, history_json};
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;

pipeline! {
    /// CSV rows, counted and dropped.
    pub SecretCsv { source: CsvFile, sink: NoopSink<CsvRow> }
}

const QUEUE: &str = "encrypted";
/// A string of the job's config: it must not appear in clear in history.
const SECRET_NAME: &str = "secret-orders-2026";

fn key(byte: u8) -> String {
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

/// A client of `server` with the keys `keys`, resolved as the CLI resolves them.
async fn client(server: &TemporalDevServer, keys: Option<&str>) -> temporalio_client::Client {
    // The kit's client waits until the server answers (its frontend can be "not healthy yet"
    // for a moment after it listens); the settings' connect below does not.
    server.client().await.expect("the dev server answers");
    let mut env = HashMap::from([("TEMPORAL_ADDRESS".to_owned(), server.address())]);
    if let Some(keys) = keys {
        env.insert(KEYS_ENV.to_owned(), keys.to_owned());
    }
    TemporalSettings::resolve(None, Some(&env))
        .expect("settings")
        .connect()
        .await
        .expect("connect")
}

/// A POST (or OPTIONS) to the codec server: the status and the body.
fn call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_jobs_keep_history_unreadable_without_the_key() {
    let server = TemporalDevServer::start().expect("dev server");
    let v1 = format!("k1={}", key(1));
    let encrypting = client(&server, Some(&v1)).await;
    let mut worker = Worker::builder(encrypting.clone(), QUEUE)
        .pipeline::<SecretCsv>()
        .unwrap()
        .build()
        .unwrap();
    let jobs = JobClient::new(encrypting, QUEUE);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{SECRET_NAME}.csv"));
    std::fs::write(&path, "id,name\n1,a\n2,b\n3,c\n").unwrap();
    let missing = dir.path().join("missing-secret-file.csv");

    let (report, failed) = worker
        .run_until(async {
            let request = SecretCsv::request(
                "encrypted-1",
                CsvFile::new(path.to_str().unwrap()),
                NoopSink::new(),
            );
            let report = jobs
                .start::<SecretCsv>(request)
                .await
                .unwrap()
                .report()
                .await;
            let request = SecretCsv::request(
                "encrypted-fails",
                CsvFile::new(missing.to_str().unwrap()),
                NoopSink::new(),
            );
            let failed = jobs
                .start::<SecretCsv>(request)
                .await
                .unwrap()
                .report()
                .await;
            (report, failed)
        })
        .await
        .unwrap();
    // The client with the key reads the report and the failure's message.
    let report = report.expect("the encrypted job's report");
    assert_eq!(report.records_read, 3);
    let Err(JobError::Failed { message, .. }) = &failed else {
        panic!("expected a failed job, got {failed:?}")
    };
    assert!(
        message.contains("missing-secret-file"),
        "the decrypted cause: {message}"
    );

    // The raw history holds none of the config or the error message.
    let plain = JobClient::new(client(&server, None).await, QUEUE);
    for job in ["encrypted-1", "encrypted-fails"] {
        let raw = String::from_utf8_lossy(&history_json(&plain, job).await).into_owned();
        assert!(
            !raw.contains(SECRET_NAME),
            "{job}: the path in clear in history"
        );
        assert!(
            !raw.contains("missing-secret-file"),
            "{job}: the message in clear in history"
        );
        let encrypted = base64::engine::general_purpose::STANDARD.encode("binary/encrypted");
        assert!(raw.contains(&encrypted), "{job}: payloads marked encrypted");
    }

    // Without the key: an error naming the key, not a silent default.
    let stranger = JobClient::new(
        client(&server, Some(&format!("k9={}", key(9)))).await,
        QUEUE,
    );
    let err = stranger
        .job::<SecretCsv>("encrypted-1")
        .report()
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("encrypted with key `k1`, which this process does not have"),
        "{err}"
    );

    // After a rotation (a new key first, the old one kept) old jobs stay readable.
    let rotated = format!("k2={},k1={}", key(2), key(1));
    let rotated = JobClient::new(client(&server, Some(&rotated)).await, QUEUE);
    let again = rotated
        .job::<SecretCsv>("encrypted-1")
        .report()
        .await
        .unwrap();
    assert_eq!(again.records_read, 3);

    // The codec server decodes the history's payloads for the UI and the CLI.
    let keys = Keyring::parse(&v1).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let codec = CodecServer::start(
        listener,
        keys,
        CodecServerOptions {
            origins: vec!["http://127.0.0.1:8233".into()],
            token: Some("t0ken".into()),
        },
    );
    let started = history(&plain, "encrypted-1")
        .await
        .into_iter()
        .find_map(|e| match e.attributes {
            Some(Attributes::WorkflowExecutionStartedEventAttributes(a)) => a.input,
            _ => None,
        })
        .unwrap()
        .payloads
        .remove(0);
    let body = serde_json::json!({ "payloads": [JsonPayload::from_payload(&started)] }).to_string();
    let addr = codec.addr();
    let (status, _, text) = tokio::task::spawn_blocking({
        let body = body.clone();
        move || {
            call(
                addr,
                "POST",
                "/decode",
                "Authorization: Bearer t0ken\r\n",
                &body,
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(status, 200, "{text}");
    let decoded: serde_json::Value = serde_json::from_str(&text).unwrap();
    let data = decoded["payloads"][0]["data"].as_str().unwrap();
    let data = base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap();
    assert!(
        String::from_utf8_lossy(&data).contains(SECRET_NAME),
        "the request in clear"
    );

    let (status, _, _) = tokio::task::spawn_blocking({
        let body = body.clone();
        move || call(addr, "POST", "/decode", "", &body)
    })
    .await
    .unwrap();
    assert_eq!(status, 401, "no token, no decoding");
    let (status, head, _) = tokio::task::spawn_blocking(move || {
        call(
            addr,
            "OPTIONS",
            "/decode",
            "Origin: http://127.0.0.1:8233\r\n",
            "",
        )
    })
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("access-control-allow-origin: http://127.0.0.1:8233"),
        "{head}"
    );

    // The `temporal` CLI shows the history in clear through the codec server.
    let temporal = batch_orchestra::testing::tools_dir()
        .map(|d| {
            let venv = d.join("venv/bin/temporal");
            if venv.exists() {
                venv
            } else {
                d.join("bin/temporal")
            }
        })
        .unwrap_or_else(|| "temporal".into());
    let out = tokio::process::Command::new(temporal)
        .args([
            "workflow",
            "show",
            "--workflow-id",
            "encrypted-1",
            "--address",
            &server.address(),
            "--codec-endpoint",
            &codec.url(),
            "--codec-auth",
            "Bearer t0ken",
            "--output",
            "json",
        ])
        .output()
        .await
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Payload data is shown in base64 or, for JSON payloads, as JSON.
    let shown_json: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert!(
        mentions(&shown_json, SECRET_NAME),
        "the CLI decoded the history: {shown:.600}"
    );
}

/// Whether `needle` is in a string of `value`, in clear or in base64.
fn mentions(value: &serde_json::Value, needle: &str) -> bool {
    match value {
        serde_json::Value::String(s) => {
            s.contains(needle)
                || base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .is_ok_and(|b| String::from_utf8_lossy(&b).contains(needle))
        }
        serde_json::Value::Array(items) => items.iter().any(|v| mentions(v, needle)),
        serde_json::Value::Object(map) => map.values().any(|v| mentions(v, needle)),
        _ => false,
    }
}
