//! The `batch-orchestra` command driven as a user would: a worker in the background, jobs
//! started from TOML files, watched, steered, cancelled and reported, against a real Temporal
//! dev server and a real MongoDB-wire server.
#![cfg(feature = "recipes")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use batch_orchestra::testing::{MongoServer, TemporalDevServer, free_port};
use mongodb::bson::doc;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_batch-orchestra");

/// The command with a clean environment for Temporal: a profile file of its own, so the
/// machine's `temporal` config never leaks in.
struct Cli {
    dir: PathBuf,
    envs: Vec<(String, String)>,
}

impl Cli {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(&self.dir)
            .env_remove("TEMPORAL_ADDRESS")
            .env_remove("TEMPORAL_NAMESPACE")
            .env_remove("TEMPORAL_PROFILE")
            .env_remove("RUST_LOG")
            .envs(self.envs.iter().map(|(k, v)| (k, v)));
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = self.command(args).output().expect("run batch-orchestra");
        eprintln!(
            "$ batch-orchestra {} -> {:?}\n{}{}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?} failed");
        serde_json::from_slice(&out.stdout).expect("JSON on stdout")
    }
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A CSV file of `rows` people with `bad` ragged rows among them (record errors).
fn write_csv(path: &Path, rows: usize, bad: &[usize]) {
    let mut text = String::from("id,name,city\n");
    for i in 0..rows {
        if bad.contains(&i) {
            text.push_str(&format!("{i},ragged\n"));
        } else {
            text.push_str(&format!("{i},name {i},city {}\n", i % 17));
        }
    }
    std::fs::write(path, text).unwrap();
}

fn job_file(dir: &Path, name: &str, csv: &Path, collection: &str, extra: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "[source]\npath = \"{}\"\n\n[sink]\nuri_env = \"MONGODB_URI\"\ndatabase = \"cli\"\ncollection = \"{collection}\"\n\n[job]\nbatch_size = 250\nmax_in_flight = 4\nbatches_per_activity = 1\n{extra}",
            csv.display()
        ),
    )
    .unwrap();
    path
}

struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn scrape(port: u16, metric: &str) -> Option<u64> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    body.lines()
        .find(|l| l.starts_with(metric))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
}

async fn count(mongo: &MongoServer, collection: &str) -> u64 {
    let client = mongodb::Client::with_uri_str(mongo.uri()).await.unwrap();
    client
        .database("cli")
        .collection::<mongodb::bson::Document>(collection)
        .count_documents(doc! {})
        .await
        .unwrap()
}

fn wait_until(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_is_started_watched_steered_and_reported_from_the_shell() {
    let temporal = TemporalDevServer::start().unwrap();
    let mongo = MongoServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The connection goes through a profile of the Temporal config file.
    let profiles = dir.path().join("temporal.toml");
    std::fs::write(
        &profiles,
        format!(
            "[profile.local]\naddress = \"{}\"\nnamespace = \"default\"\n",
            temporal.address()
        ),
    )
    .unwrap();
    let cli = Cli {
        dir: dir.path().to_owned(),
        envs: vec![
            (
                "TEMPORAL_CONFIG_FILE".into(),
                profiles.display().to_string(),
            ),
            ("TEMPORAL_PROFILE".into(), "local".into()),
            ("MONGODB_URI".into(), mongo.uri()),
            ("BATCH_ORCHESTRA_TASK_QUEUE".into(), "cli-test".into()),
        ],
    };
    let metrics_port = free_port().unwrap();
    let mut worker = Worker(
        cli.command(&[
            "--profile",
            "local",
            "worker",
            "--metrics",
            &format!("127.0.0.1:{metrics_port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );

    let rows = 12_000;
    let csv = dir.path().join("people.csv");
    write_csv(&csv, rows, &[10, 5_000, 11_999]);
    let job = job_file(dir.path(), "job.toml", &csv, "people", "");

    // Started with a rate limit, so it runs long enough to steer.
    let out = cli.run(&[
        "--profile",
        "local",
        "start",
        "csv-to-mongo",
        "--job",
        "people-1",
        "--config",
        job.to_str().unwrap(),
        "--rate",
        "3000",
    ]);
    assert_eq!(code(&out), 0);
    // The other commands find the profile through TEMPORAL_PROFILE.
    let run = |args: &[&str]| cli.run(args);
    let json = |args: &[&str]| cli.json(args);

    let status = json(&["status", "people-1", "--json"]);
    assert_eq!(status["max_records_per_s"], 3000);
    assert_eq!(status["report"]["pipeline"], "csv-to-mongo");

    // Pause: confirmed, and once the running batches finished nothing more is read.
    let out = run(&["pause", "people-1"]);
    assert_eq!(code(&out), 0);
    assert!(
        stdout(&out).contains("job `people-1` paused"),
        "{}",
        stdout(&out)
    );
    let mut read = 0;
    wait_until("the paused job to drain", Duration::from_secs(20), || {
        let s = json(&["status", "people-1", "--json"]);
        read = s["report"]["records_read"].as_u64().unwrap();
        s["paused"] == true && s["in_flight"] == 0
    });
    std::thread::sleep(Duration::from_millis(1500));
    let s = json(&["status", "people-1", "--json"]);
    assert_eq!(s["report"]["records_read"].as_u64().unwrap(), read);
    assert!(read < rows as u64, "paused before the end: {read}");
    // While paused, the worker's counters hold what the job's progress says.
    let written = s["report"]["records_written"].as_u64().unwrap();
    assert_eq!(
        scrape(
            metrics_port,
            "batch_orchestra_records_written_total{pipeline=\"csv-to-mongo\"}"
        ),
        Some(written)
    );
    let human = stdout(&run(&["status", "people-1"]));
    assert!(human.contains("running, paused"), "{human}");

    // Parallelism and rate, each confirmed by the job's progress.
    let out = run(&["set-parallelism", "people-1", "2"]);
    assert_eq!(code(&out), 0);
    assert_eq!(json(&["status", "people-1", "--json"])["max_in_flight"], 2);
    let out = run(&["set-parallelism", "people-1", "0"]);
    assert_eq!(code(&out), 2, "out of range is a usage error");
    let out = run(&["set-rate", "people-1", "0"]);
    assert_eq!(code(&out), 0);
    assert!(stdout(&out).contains("no rate limit"));
    assert_eq!(
        json(&["status", "people-1", "--json"])["max_records_per_s"],
        Value::Null
    );

    // Resume and watch to the end: the exit code is the job's outcome.
    assert_eq!(code(&run(&["resume", "people-1"])), 0);
    let out = run(&["watch", "people-1"]);
    assert_eq!(code(&out), 0);
    assert!(
        stdout(&out).contains("status    completed"),
        "{}",
        stdout(&out)
    );

    let report = json(&["report", "people-1", "--json"]);
    assert_eq!(report["status"], "Completed");
    assert_eq!(report["records_read"], rows as u64);
    assert_eq!(report["record_errors"], 3);
    assert_eq!(report["records_written"], rows as u64 - 3);
    let lines: Vec<u64> = report["error_samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["position"]["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, vec![12, 5_002, 12_001], "the bad rows, by line");
    assert_eq!(count(&mongo, "people").await, rows as u64 - 3);

    // The worker's metrics add up to the report.
    assert_eq!(
        scrape(
            metrics_port,
            "batch_orchestra_records_written_total{pipeline=\"csv-to-mongo\"}"
        ),
        Some(rows as u64 - 3)
    );
    assert_eq!(
        scrape(
            metrics_port,
            "batch_orchestra_record_errors_total{pipeline=\"csv-to-mongo\"}"
        ),
        Some(3)
    );
    assert!(
        scrape(metrics_port, "temporal_").is_some(),
        "the SDK's worker metrics are on the same endpoint"
    );

    // A finished job refuses to be steered, with the reason.
    let out = run(&["pause", "people-1"]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("it is not running (it completed)"),
        "{}",
        stderr(&out)
    );

    // Cancel a second job: the counts match the collection, and its report says cancelled.
    let slow = job_file(
        dir.path(),
        "slow.toml",
        &csv,
        "slow",
        "max_records_per_s = 1500\n",
    );
    assert_eq!(
        code(&run(&[
            "start",
            "csv-to-mongo",
            "--job",
            "slow-1",
            "--config",
            slow.to_str().unwrap()
        ])),
        0
    );
    wait_until("the slow job to write", Duration::from_secs(20), || {
        json(&["status", "slow-1", "--json"])["report"]["records_written"]
            .as_u64()
            .unwrap()
            > 0
    });
    let out = run(&["cancel", "slow-1"]);
    assert_eq!(code(&out), 0);
    assert!(
        stdout(&out).contains("status    cancelled"),
        "{}",
        stdout(&out)
    );
    let out = run(&["report", "slow-1", "--json"]);
    assert_eq!(code(&out), 6, "a cancelled job's report exits 6");
    let cancelled: Value = serde_json::from_slice(&out.stdout).unwrap();
    let written = cancelled["records_written"].as_u64().unwrap();
    assert!(written > 0 && written < rows as u64 - 3, "{written}");
    assert_eq!(count(&mongo, "slow").await, written);

    // A rate limit holds the pace: 3,000 records at 1,000 per second take about 3 s.
    let small = dir.path().join("small.csv");
    write_csv(&small, 3_000, &[]);
    let rated = job_file(dir.path(), "rated.toml", &small, "rated", "");
    let out = run(&[
        "start",
        "csv-to-mongo",
        "--job",
        "rated-1",
        "--config",
        rated.to_str().unwrap(),
        "--rate",
        "1000",
        "--watch",
    ]);
    assert_eq!(code(&out), 0);
    let report = json(&["report", "rated-1", "--json"]);
    assert_eq!(report["records_written"], 3_000);
    let elapsed = report["elapsed_ms"].as_u64().unwrap();
    assert!(
        elapsed >= 2_000,
        "3,000 records at 1,000/s took {elapsed} ms"
    );

    // A job that fails has no report, only its cause: printed, and exit code 4.
    let gone = job_file(
        dir.path(),
        "gone.toml",
        &dir.path().join("no-such.csv"),
        "gone",
        "",
    );
    let out = run(&[
        "start",
        "csv-to-mongo",
        "--job",
        "gone-1",
        "--config",
        gone.to_str().unwrap(),
        "--watch",
    ]);
    assert_eq!(code(&out), 4);
    assert!(
        stdout(&out).contains("status    failed (ConfigError)"),
        "{}",
        stdout(&out)
    );
    let out = run(&["status", "gone-1", "--json"]);
    assert_eq!(code(&out), 4);
    let failed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(failed["status"], "Failed");
    assert!(
        failed["failure"].as_str().unwrap().contains("no-such.csv"),
        "{failed}"
    );

    // A job file with `[shards]`: one job over every file its glob matches, watched and
    // reported like any other.
    let daily = dir.path().join("daily");
    std::fs::create_dir_all(&daily).unwrap();
    for (day, bad) in [(1, vec![]), (2, vec![5]), (3, vec![])] {
        write_csv(&daily.join(format!("day-{day}.csv")), 400, &bad);
    }
    let sharded = job_file(
        dir.path(),
        "sharded.toml",
        &daily.join("*.csv"),
        "daily",
        "\n[shards]\nmax_concurrent = 2\nmax_inputs_per_shard = 1\n",
    );
    let out = run(&[
        "start",
        "csv-to-mongo",
        "--job",
        "daily-1",
        "--config",
        sharded.to_str().unwrap(),
        "--watch",
    ]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("completed"), "{}", stdout(&out));
    let report = json(&["report", "daily-1", "--json"]);
    assert_eq!(report["records_written"], 1_199);
    assert_eq!(report["shards_completed"], 3);
    let first_error = report["error_samples"][0]["message"].as_str().unwrap();
    assert!(first_error.starts_with("day-2.csv: "), "{first_error}");
    assert_eq!(count(&mongo, "daily").await, 1_199);
    let out = run(&["pipelines"]);
    assert!(!stdout(&out).contains(".sharded"), "{}", stdout(&out));

    // The jobs are listed, newest first.
    let out = run(&["list", "--json"]);
    assert_eq!(code(&out), 0);
    let listed: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&str> = listed
        .iter()
        .map(|j| j["job_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec!["daily-1", "gone-1", "rated-1", "slow-1", "people-1"]
    );
    assert_eq!(listed[0]["pipeline"], "csv-to-mongo.sharded");
    assert_eq!(listed[1]["status"], "Failed");
    assert_eq!(listed[4]["status"], "Completed");
    assert_eq!(listed[3]["status"], "Canceled");

    // A job with a quarantine: its ragged rows are kept whole, and `errors` lists them.
    let quarantine = dir.path().join("quarantine");
    let kept = job_file(
        dir.path(),
        "kept.toml",
        &csv,
        "kept",
        &format!("quarantine = {{ Dir = \"{}\" }}\n", quarantine.display()),
    );
    let out = run(&[
        "start",
        "csv-to-mongo",
        "--job",
        "kept-1",
        "--config",
        kept.to_str().unwrap(),
        "--watch",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("quarantine 3 records in"),
        "{}",
        stdout(&out)
    );
    let out = run(&["errors", "kept-1"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.matches("read: expected 3 fields").count(), 3, "{text}");
    assert!(text.contains("    5000,ragged"), "{text}");
    let out = run(&["errors", "kept-1", "--json"]);
    let kept: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let raw: Vec<&str> = kept.iter().map(|k| k["raw"].as_str().unwrap()).collect();
    assert_eq!(raw, ["10,ragged", "5000,ragged", "11999,ragged"]);
    assert_eq!(kept[0]["stage"], "read");
    assert_eq!(kept[0]["position"]["line"], 12);
    // A job without a quarantine says so, and how to keep one.
    let out = run(&["errors", "people-1"]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("keeps no quarantine"),
        "{}",
        stderr(&out)
    );

    // SIGTERM: the worker shuts down gracefully and exits 0.
    let pid = worker.0.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(status) = worker.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the worker did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn bad_job_files_and_unknown_pipelines_get_the_documented_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli {
        dir: dir.path().to_owned(),
        envs: vec![],
    };
    let csv = dir.path().join("in.csv");
    write_csv(&csv, 10, &[]);

    let good = job_file(
        dir.path(),
        "good.toml",
        &csv,
        "c",
        "max_records_per_s = 100\n",
    );
    let out = cli.run(&[
        "start",
        "csv-to-mongo",
        "--job",
        "j",
        "--config",
        good.to_str().unwrap(),
        "--check",
    ]);
    assert_eq!(code(&out), 0);
    assert!(stdout(&out).contains("a valid job of `csv-to-mongo`"));

    // An unknown key: the file, the line and the key.
    let typo = dir.path().join("typo.toml");
    std::fs::write(
        &typo,
        "[source]\npath = \"in.csv\"\npathh = \"x\"\n\n[sink]\nuri_env = \"M\"\ndatabase = \"d\"\ncollection = \"c\"\n",
    )
    .unwrap();
    let out = cli.run(&[
        "start",
        "csv-to-mongo",
        "--job",
        "j",
        "--config",
        typo.to_str().unwrap(),
        "--check",
    ]);
    assert_eq!(code(&out), 3);
    let err = stderr(&out);
    assert!(
        err.contains("typo.toml, line 3: unknown key `source.pathh`"),
        "{err}"
    );

    // `[source.options]` with one key keeps the other options' defaults; a misspelt option
    // is named.
    let check = |name: &str, options: &str| {
        let file = dir.path().join(name);
        std::fs::write(
            &file,
            format!("[source]\npath = \"in.csv\"\n\n[source.options]\n{options}\n\n[sink]\nuri_env = \"M\"\ndatabase = \"d\"\ncollection = \"c\"\n"),
        )
        .unwrap();
        cli.run(&[
            "start",
            "csv-to-mongo",
            "--job",
            "j",
            "--config",
            file.to_str().unwrap(),
            "--check",
        ])
    };
    let out = check("partial.toml", "delimiter = \";\"");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = check("misspelt.toml", "delimeter = \";\"");
    assert_eq!(code(&out), 3);
    assert!(
        stderr(&out).contains("line 5: unknown key `source.options.delimeter`"),
        "{}",
        stderr(&out)
    );

    // A value of the wrong type: the file and the line.
    let wrong = dir.path().join("wrong.toml");
    std::fs::write(
        &wrong,
        "[source]\npath = \"in.csv\"\n\n[sink]\nuri_env = \"M\"\ndatabase = \"d\"\ncollection = \"c\"\n\n[job]\nbatch_size = \"big\"\n",
    )
    .unwrap();
    let out = cli.run(&[
        "start",
        "csv-to-mongo",
        "--job",
        "j",
        "--config",
        wrong.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 3);
    let err = stderr(&out);
    assert!(
        err.contains("wrong.toml") && err.contains("line 10"),
        "{err}"
    );
    assert!(err.contains("batch_size"), "{err}");

    // A missing table, a request the job would refuse, a file that is not there.
    let missing = dir.path().join("missing.toml");
    std::fs::write(&missing, "[source]\npath = \"in.csv\"\n").unwrap();
    let out = cli.run(&[
        "start",
        "csv-to-mongo",
        "--job",
        "j",
        "--config",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 3);
    assert!(
        stderr(&out).contains("missing field `sink`"),
        "{}",
        stderr(&out)
    );
    let zero = job_file(dir.path(), "zero.toml", &csv, "c", "plan_ahead = 0\n");
    let out = cli.run(&[
        "start",
        "csv-to-mongo",
        "--job",
        "j",
        "--config",
        zero.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 3);
    let err = stderr(&out);
    assert!(
        err.contains("zero.toml") && err.contains("plan_ahead"),
        "{err}"
    );
    assert!(!err.contains("TOML parse error"), "{err}");
    let out = cli.run(&[
        "start",
        "csv-to-mongo",
        "--job",
        "j",
        "--config",
        "nowhere.toml",
    ]);
    assert_eq!(code(&out), 3);
    assert!(stderr(&out).contains("cannot read the job file nowhere.toml"));

    // An unknown pipeline lists the known ones.
    let out = cli.run(&[
        "start",
        "csv-to-mongoo",
        "--job",
        "j",
        "--config",
        good.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(err.contains("unknown pipeline `csv-to-mongoo`"), "{err}");
    assert!(
        err.contains("csv-to-mongo, csv-to-json-lines, csv-to-noop"),
        "{err}"
    );

    // Connection settings that cannot be used: exit 3, said as settings, no server reached.
    let bad_address = Cli {
        dir: dir.path().to_owned(),
        envs: vec![("TEMPORAL_ADDRESS".into(), "http://[not an address".into())],
    };
    let out = bad_address.run(&["status", "j"]);
    assert_eq!(code(&out), 3);
    let err = stderr(&out);
    assert!(err.contains("Temporal connection settings"), "{err}");
    assert!(!err.contains("Temporal server error"), "{err}");

    // A bad argument is named before any job is looked up: exit 2.
    let out = cli.run(&["watch", "no-such-job", "--interval-s", "0"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("--interval-s"), "{}", stderr(&out));

    // Every subcommand's help shows an example.
    for sub in [
        "worker",
        "start",
        "watch",
        "status",
        "list",
        "pause",
        "resume",
        "set-parallelism",
        "set-rate",
        "cancel",
        "report",
        "redrive",
        "setup",
        "dev",
    ] {
        let out = cli.run(&[sub, "--help"]);
        assert_eq!(code(&out), 0);
        assert!(
            stdout(&out).contains("Example:"),
            "{sub} --help has no example"
        );
    }
    // `start --help` is made from the registered pipelines and their connectors.
    let help = stdout(&cli.run(&["start", "--help"]));
    assert!(
        help.contains("start csv-to-mongo --job csv-to-mongo-1 --config job.toml")
            && help.contains("json-lines-to-noop")
            && help.contains("the `csv-file` source's fields, [sink]: the `mongodb` sink's"),
        "{help}"
    );
}

#[test]
fn setup_reuses_the_installed_servers_and_dev_serves_them_until_stopped() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli {
        dir: dir.path().to_owned(),
        envs: vec![(
            "TEMPORAL_CONFIG_FILE".into(),
            dir.path().join("none.toml").display().to_string(),
        )],
    };
    // The project's setup installed them into the same folder (BATCH_ORCHESTRA_TOOLS).
    let out = cli.run(&["setup"]);
    assert_eq!(code(&out), 0);
    let err = stderr(&out);
    assert!(
        err.contains("temporal:") && err.contains("already installed"),
        "{err}"
    );
    assert!(
        err.contains("secantusd-rs:") && err.contains("nats-server:"),
        "{err}"
    );

    let mut dev = cli
        .command(&["dev", "--nats"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(dev.stdout.take().unwrap()).lines();
    let mut exports = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.starts_with("# Temporal web UI: http://127.0.0.1:") {
            break;
        }
        exports.push(line);
    }
    let var = |name: &str| {
        exports
            .iter()
            .find_map(|l| l.strip_prefix(&format!("export {name}=")))
            .unwrap_or_else(|| panic!("{name} in {exports:?}"))
            .to_owned()
    };
    let address = var("TEMPORAL_ADDRESS");
    assert!(address.starts_with("127.0.0.1:"), "{address}");
    assert!(var("MONGODB_URI").starts_with("mongodb://127.0.0.1:"));
    let nats = var("NATS_URL");
    let nats_port = nats.strip_prefix("nats://").unwrap().to_owned();
    assert!(
        std::net::TcpStream::connect(nats_port.as_str()).is_ok(),
        "{nats}"
    );

    // The printed address serves the other commands.
    let with_dev = Cli {
        dir: dir.path().to_owned(),
        envs: vec![
            (
                "TEMPORAL_CONFIG_FILE".into(),
                dir.path().join("none.toml").display().to_string(),
            ),
            ("TEMPORAL_ADDRESS".into(), address.clone()),
        ],
    };
    let out = with_dev.command(&["list"]).output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // SIGTERM stops the servers (by their process ids) and the command.
    Command::new("kill")
        .args(["-TERM", &dev.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(status) = dev.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "dev did not stop");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exit.success(), "{exit:?}");
    assert!(
        std::net::TcpStream::connect(address.as_str()).is_err(),
        "the Temporal dev server is stopped"
    );
    assert!(
        std::net::TcpStream::connect(nats_port.as_str()).is_err(),
        "the NATS server is stopped"
    );
}

/// A streaming recipe from the shell: a job file with a `[stream]` table, `start --watch`
/// until its end condition, the report, and what a stream job refuses.
#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_job_from_the_shell() {
    use async_nats::jetstream::{self, consumer::AckPolicy, consumer::pull};
    use batch_orchestra::testing::NatsServer;

    let temporal = TemporalDevServer::start().unwrap();
    let mongo = MongoServer::start().unwrap();
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli {
        dir: dir.path().to_owned(),
        envs: vec![
            ("TEMPORAL_ADDRESS".into(), temporal.address()),
            ("MONGODB_URI".into(), mongo.uri()),
            ("NATS_URL".into(), nats.url()),
            (
                "BATCH_ORCHESTRA_TASK_QUEUE".into(),
                "cli-stream-test".into(),
            ),
        ],
    };
    let _worker = Worker(
        cli.command(&["worker"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let stream = js
        .create_stream(jetstream::stream::Config {
            name: "ORDERS".into(),
            subjects: vec!["orders.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    stream
        .create_consumer(pull::Config {
            durable_name: Some("to-mongo".into()),
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    for n in 0..500 {
        let payload = format!("{{\"order\": {n}}}");
        js.publish("orders.new", payload.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let config = dir.path().join("stream.toml");
    let write = |stream_table: &str| {
        std::fs::write(
            &config,
            format!(
                "[source]\nurl_env = \"NATS_URL\"\nstream = \"ORDERS\"\nconsumer = \"to-mongo\"\n\n[sink]\nuri_env = \"MONGODB_URI\"\ndatabase = \"cli\"\ncollection = \"orders\"\n\n[stream]\n{stream_table}"
            ),
        )
        .unwrap();
    };
    let config_path = config.to_str().unwrap();

    write("linger_s = 0.05\nmax_recordz = 500\n");
    let out = cli.run(&[
        "start",
        "nats-to-mongo",
        "--job",
        "orders-1",
        "--config",
        config_path,
    ]);
    assert_eq!(code(&out), 3, "an unknown key is a configuration error");
    let err = stderr(&out);
    assert!(
        err.contains("stream.toml: TOML parse error at line 13")
            && err.contains("unknown field `max_recordz`, expected one of `batch_size`"),
        "{err}"
    );

    write("linger_s = 0.05\nmax_records = 500\n");
    let out = cli.run(&[
        "start",
        "nats-to-mongo",
        "--job",
        "orders-1",
        "--config",
        config_path,
        "--rate",
        "10",
    ]);
    assert_eq!(code(&out), 3, "a stream has no rate limit");
    assert!(
        stderr(&out).contains("has no rate limit"),
        "{}",
        stderr(&out)
    );

    let out = cli.run(&[
        "start",
        "nats-to-mongo",
        "--job",
        "orders-1",
        "--config",
        config_path,
        "--watch",
    ]);
    assert_eq!(code(&out), 0, "watched to its end condition");
    let report = cli.json(&["report", "orders-1", "--json"]);
    assert_eq!(report["status"], "Completed");
    assert_eq!(report["records_written"], 500);
    assert_eq!(report["ended"], "MaxRecords");
    assert_eq!(count(&mongo, "orders").await, 500);
    let out = cli.run(&["redrive", "orders-1"]);
    assert_ne!(code(&out), 0);
    assert!(
        stderr(&out).contains("a streaming job has no failed batches"),
        "{}",
        stderr(&out)
    );
}

/// `codec-server` refuses to start without keys, and with keys encrypts and decrypts a
/// payload for a caller with the token.
#[test]
fn codec_server_needs_keys_and_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli {
        dir: dir.path().to_owned(),
        envs: vec![],
    };
    let out = cli.run(&["codec-server", "--port", "0"]);
    assert_eq!(code(&out), 3);
    assert!(
        stderr(&out).contains("no encryption keys"),
        "{}",
        stderr(&out)
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cli = Cli {
        dir: dir.path().to_owned(),
        envs: vec![
            (
                "BATCH_ORCHESTRA_ENCRYPTION_KEYS".into(),
                "k1=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into(),
            ),
            ("CODEC_TOKEN".into(), "s3cret".into()),
        ],
    };
    let mut child = Worker(
        cli.command(&[
            "codec-server",
            "--port",
            &port.to_string(),
            "--token-env",
            "CODEC_TOKEN",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap(),
    );
    let post = |path: &str, token: &str, body: &str| -> (String, String) {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        (
            head.lines().next().unwrap_or("").to_owned(),
            body.to_owned(),
        )
    };
    wait_until("the codec server listens", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    // "hello" as a payload, encrypted then decrypted.
    let plain =
        r#"{"payloads":[{"metadata":{"encoding":"anNvbi9wbGFpbg=="},"data":"ImhlbGxvIg=="}]}"#;
    let (status, sealed) = post("/encode", "s3cret", plain);
    assert!(status.contains("200"), "{status} {sealed}");
    assert!(!sealed.contains("ImhlbGxvIg=="), "encrypted: {sealed}");
    let (status, opened) = post("/decode", "s3cret", &sealed);
    assert!(status.contains("200"), "{status} {opened}");
    assert!(opened.contains("ImhlbGxvIg=="), "{opened}");
    let (status, _) = post("/decode", "wrong", &sealed);
    assert!(status.contains("401"), "{status}");
    let _ = child.0.kill();
}

/// Every subcommand's bad arguments exit 2 with what is wrong, before anything is contacted
/// (the address points nowhere).
#[test]
fn a_job_is_scheduled_described_paused_triggered_and_deleted_from_the_shell() {
    let temporal = TemporalDevServer::start().unwrap();
    let mongo = MongoServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli {
        dir: dir.path().to_owned(),
        envs: vec![
            ("TEMPORAL_ADDRESS".into(), temporal.address()),
            ("MONGODB_URI".into(), mongo.uri()),
            ("BATCH_ORCHESTRA_TASK_QUEUE".into(), "cli-schedule".into()),
        ],
    };
    let _worker = Worker(
        cli.command(&["worker"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let csv = dir.path().join("people.csv");
    write_csv(&csv, 500, &[]);
    // Keyed by `id`, so every run after the first finds the rows already there.
    let job = dir.path().join("hourly.toml");
    let file = |schedule: &str| {
        format!(
            "[source]\npath = \"{}\"\n\n[sink]\nuri_env = \"MONGODB_URI\"\ndatabase = \"cli\"\ncollection = \"scheduled\"\nid = {{ Field = \"id\" }}\n\n[schedule]\n{schedule}\n",
            csv.display()
        )
    };
    std::fs::write(&job, file("every = \"2s\"")).unwrap();
    let job = job.to_str().unwrap();
    let create = [
        "schedule",
        "create",
        "csv-to-mongo",
        "--job",
        "people",
        "--config",
        job,
    ];
    let out = cli.run(&create);
    assert_eq!(code(&out), 0);
    assert!(stdout(&out).contains("runs are named people-<scheduled time>"));
    let again = cli.run(&create);
    assert_eq!(code(&again), 1, "a second schedule `people` is refused");
    assert!(stderr(&again).contains("schedule `people` exists already"));

    let listed = stdout(&cli.run(&["schedule", "list", "--json"]));
    assert!(
        listed.contains("\"schedule\":\"people\"")
            && listed.contains("\"pipeline\":\"csv-to-mongo\""),
        "{listed}"
    );

    // Two runs complete, named by their scheduled times; the second finds every row there.
    let describe = || cli.json(&["schedule", "describe", "people", "--json"]);
    let completed = |d: &Value| {
        d["recent_runs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] == "completed")
            .cloned()
            .collect::<Vec<_>>()
    };
    wait_until(
        "two completed scheduled runs",
        Duration::from_secs(60),
        || completed(&describe()).len() >= 2,
    );
    let runs = completed(&describe());
    for run in &runs {
        assert!(
            run["job_id"].as_str().unwrap().starts_with("people-20"),
            "{run}"
        );
    }
    assert_eq!(
        runs[0]["report"]["records_written"], 500,
        "the first run loads the file"
    );
    assert_eq!(
        runs[1]["report"]["already_present"], 500,
        "the next run finds every row there: {}",
        runs[1]
    );
    let human = stdout(&cli.run(&["schedule", "describe", "people"]));
    assert!(human.contains("paused     no"), "{human}");
    assert!(
        human.contains(runs[0]["job_id"].as_str().unwrap()),
        "{human}"
    );

    let out = cli.run(&["schedule", "pause", "people", "--note", "source upgrade"]);
    assert_eq!(code(&out), 0);
    let paused = describe();
    assert_eq!(paused["paused"], true);
    assert_eq!(paused["note"], "source upgrade");
    let started = paused["runs_started"].as_i64().unwrap();
    assert_eq!(code(&cli.run(&["schedule", "trigger", "people"])), 0);
    wait_until("the triggered run", Duration::from_secs(30), || {
        describe()["runs_started"].as_i64().unwrap() > started
    });
    let bad_time = cli.run(&[
        "schedule",
        "backfill",
        "people",
        "--from",
        "yesterday",
        "--to",
        "2026-12-02T00:00:00Z",
    ]);
    assert_eq!(code(&bad_time), 2);
    assert!(stderr(&bad_time).contains("`yesterday` is not a UTC time"));
    assert_eq!(code(&cli.run(&["schedule", "unpause", "people"])), 0);
    assert_eq!(code(&cli.run(&["schedule", "delete", "people"])), 0);
    let gone = cli.run(&["schedule", "describe", "people"]);
    assert_eq!(code(&gone), 1);
    assert!(
        stderr(&gone).contains("schedule `people` was not found"),
        "{}",
        stderr(&gone)
    );

    // A starting or ending cursor needs an incremental job (`job.sync`).
    for flag in ["--from-cursor", "--to-cursor"] {
        let out = cli.run(&[
            "start",
            "csv-to-mongo",
            "--job",
            "x",
            "--config",
            job,
            flag,
            "{\"byte\": 1}",
        ]);
        assert_eq!(code(&out), 3, "{flag}");
        assert!(
            stderr(&out).contains("set `job.sync` too"),
            "{flag}: {}",
            stderr(&out)
        );
    }

    // Bad schedules: a time that is not one, none at all, a key the table does not have.
    for (schedule, exit, says) in [
        ("every = \"soon\"", 2, "`soon` is not an interval"),
        ("", 2, "no time to run at"),
        (
            "every = \"1h\"\ncolour = \"red\"",
            3,
            "unknown field `colour`",
        ),
    ] {
        std::fs::write(dir.path().join("bad.toml"), file(schedule)).unwrap();
        let bad = dir.path().join("bad.toml");
        let out = cli.run(&[
            "schedule",
            "create",
            "csv-to-mongo",
            "--job",
            "bad",
            "--config",
            bad.to_str().unwrap(),
        ]);
        assert_eq!(code(&out), exit, "{schedule}");
        assert!(stderr(&out).contains(says), "{schedule}: {}", stderr(&out));
    }
}

#[test]
fn every_subcommand_refuses_bad_arguments_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli {
        dir: dir.path().to_owned(),
        envs: vec![("TEMPORAL_ADDRESS".into(), "127.0.0.1:1".into())],
    };
    let cases: &[(&[&str], &str)] = &[
        (&["start"], "required arguments were not provided"),
        (&["watch"], "<JOB>"),
        (
            &["watch", "j", "--interval-s", "0"],
            "--interval-s must be at least 0.1",
        ),
        (&["status"], "<JOB>"),
        (&["list", "--bogus"], "unexpected argument '--bogus'"),
        (&["pause"], "<JOB>"),
        (&["resume"], "<JOB>"),
        (&["set-parallelism", "j"], "<N>"),
        (&["set-parallelism", "j", "0"], "0 is not in 1..=1000"),
        (&["set-rate", "j", "x"], "invalid value 'x'"),
        (&["cancel"], "<JOB>"),
        (&["report"], "<JOB>"),
        (&["redrive"], "<JOB>"),
        (&["worker", "--metrics", "nope"], "invalid socket address"),
        (&["codec-server", "--port", "x"], "invalid value 'x'"),
        (&["bogus"], "unrecognized subcommand 'bogus'"),
        (
            &["schedule", "create"],
            "required arguments were not provided",
        ),
        (&["schedule", "describe"], "<ID>"),
        (&["schedule", "bogus"], "unrecognized subcommand 'bogus'"),
    ];
    for (args, says) in cases {
        let out = cli.run(args);
        assert_eq!(code(&out), 2, "{args:?}");
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
}
