//! Quarantine on real servers: every record that fails (a ragged row and one that is not
//! UTF-8 at read, a transform's rejection, a row PostgreSQL refuses) is kept whole, with its
//! position, stage, reason and bytes; a job run again over the same input quarantines each
//! once; a quarantine that cannot be written fails its batch, never drops the records.
//!
//! One test function: the sink reads its connection string from the worker's environment,
//! and the variable is set before any other thread starts. Each check prints its name.

use std::path::Path;
use std::time::Duration;

use batch_orchestra::batch::JobReport;
use batch_orchestra::connectors::csv::{CsvFile, CsvOffset, CsvRow};
use batch_orchestra::connectors::postgres::{PostgresSink, row_from_csv};
use batch_orchestra::quarantine::{self, Quarantine, QuarantinedRecord, Stage};
use batch_orchestra::testing::PostgresServer;
use batch_orchestra::{JobClient, JobStatus, TransformError, pipeline, pipelines};
use batch_orchestra_tests::{Harness, quick_retries, run};
use tokio_postgres::NoTls;

/// Rejects people named `reject`; the rest become rows.
fn checked(row: CsvRow) -> Result<serde_json::Value, TransformError> {
    if row.get("name") == Some("reject") {
        return Err(TransformError::new("the name `reject` is not allowed"));
    }
    row_from_csv(row)
}

pipeline! {
    /// CSV rows into PostgreSQL, with a transform that rejects some.
    pub CsvToPostgresChecked { source: CsvFile, transform: checked, sink: PostgresSink }
}

const PG_ENV: &str = "BATCH_ORCHESTRA_TEST_QUARANTINE_DATABASE_URL";

type Report = JobReport<CsvOffset>;

#[test]
fn quarantine() {
    let pg = PostgresServer::start().unwrap();
    // SAFETY: set before the runtime, the server's clients or any other thread exist.
    unsafe { std::env::set_var(PG_ENV, pg.url()) };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let mut h = Harness::with(pipelines![CsvToPostgresChecked]).await;
            let (db, connection) = tokio_postgres::connect(&pg.url(), NoTls).await.unwrap();
            tokio::spawn(connection);
            db.batch_execute(
                "CREATE TABLE people (id bigint PRIMARY KEY, name text, age int);
                 CREATE TABLE people_again (LIKE people INCLUDING ALL);",
            )
            .await
            .unwrap();
            let dir = tempfile::tempdir().unwrap();
            let (jobs, dir) = (&h.jobs, dir.path());
            h.worker
                .run_until(async {
                    println!("check: every failed record is kept whole, with stage and reason");
                    failed_records_are_kept_whole(jobs, dir).await;
                    println!("check: the same job again quarantines each record once");
                    a_job_run_again_quarantines_once(jobs, dir).await;
                    println!("check: a quarantine that cannot be written fails its batch");
                    an_unwritable_quarantine_fails_the_batch(jobs, dir).await;
                })
                .await
                .unwrap();
        });
}

/// 60 people; four fail: record 3 (line 5) has a field too many, record 12 (line 14) is not
/// UTF-8, record 25 (line 27) is named `reject`, record 38 (line 40) has an age PostgreSQL
/// refuses. Returns the file's bytes.
fn people() -> Vec<u8> {
    let mut bytes = b"id,name,age\n".to_vec();
    for i in 0..60u32 {
        let line: Vec<u8> = match i {
            3 => format!("{i},too,many,fields\n").into_bytes(),
            12 => [format!("{i},caf").as_bytes(), b"\xe9,30\n"].concat(),
            25 => format!("{i},reject,30\n").into_bytes(),
            38 => format!("{i},person {i},old\n").into_bytes(),
            _ => format!("{i},person {i},{}\n", i % 90).into_bytes(),
        };
        bytes.extend(line);
    }
    bytes
}

/// The bytes of CSV line `line` (from 1) of `file`, without its line end.
fn line_of(file: &[u8], line: u64) -> Vec<u8> {
    file.split(|&b| b == b'\n')
        .nth(line as usize - 1)
        .unwrap()
        .to_vec()
}

async fn load(jobs: &JobClient, job: &str, path: &str, table: &str, q: &Quarantine) -> Report {
    let sink = PostgresSink::new(table).key_columns(["id"]).url_env(PG_ENV);
    let request = CsvToPostgresChecked::request(job, CsvFile::new(path), sink)
        .batch_size(20)
        .max_in_flight(2)
        .quarantine(q.clone());
    run::<CsvToPostgresChecked>(jobs, request)
        .await
        .unwrap_or_else(|e| panic!("job {job}: {e}"))
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_string_lossy().into_owned()
}

async fn failed_records_are_kept_whole(jobs: &JobClient, dir: &Path) {
    let file = people();
    let path = write(dir, "people.csv", &file);
    let q = Quarantine::dir(dir.join("quarantine").to_string_lossy());
    let report = load(jobs, "q-people", &path, "people", &q).await;
    assert_eq!(report.records_written, 56, "{report:?}");
    assert_eq!(report.record_errors, 4, "{report:?}");
    assert_eq!(report.quarantined, 4, "{report:?}");
    assert_eq!(report.quarantine.as_ref(), Some(&q), "{report:?}");

    let kept = quarantine::read_job(&q, "q-people").unwrap();
    let seen: Vec<(Option<u64>, Stage)> = kept.iter().map(|r| (r.position.line, r.stage)).collect();
    assert_eq!(
        seen,
        [
            (Some(5), Stage::Read),
            (Some(14), Stage::Read),
            (Some(27), Stage::Transform),
            (Some(40), Stage::Write)
        ],
        "{kept:#?}"
    );
    for record in &kept {
        assert_eq!(record.job_id, "q-people");
        let line = record.position.line.unwrap();
        assert_eq!(
            record.raw_bytes().as_deref(),
            Some(&line_of(&file, line)[..]),
            "the bytes of line {line}: {record:?}"
        );
    }
    let reasons: Vec<&str> = kept.iter().map(|r| r.reason.as_str()).collect();
    assert!(reasons[0].contains("expected 3 fields"), "{reasons:?}");
    assert!(reasons[1].contains("UTF-8"), "{reasons:?}");
    assert!(
        reasons[2].contains("`reject` is not allowed"),
        "{reasons:?}"
    );
    assert!(reasons[3].contains("column `age`"), "{reasons:?}");
    // Not UTF-8: kept as base64, and the text form is absent.
    let not_text: &QuarantinedRecord = &kept[1];
    assert!(
        not_text.raw.is_none() && not_text.raw_base64.is_some(),
        "{not_text:?}"
    );
}

async fn a_job_run_again_quarantines_once(jobs: &JobClient, dir: &Path) {
    let path = write(dir, "again.csv", &people());
    let q = Quarantine::dir(dir.join("quarantine-again").to_string_lossy());
    let first = load(jobs, "q-again", &path, "people_again", &q).await;
    assert_eq!(first.quarantined, 4, "{first:?}");
    // The same job id over the same input: its rows are already present, and each failed
    // record's batch file is written again, not added to.
    let second = load(jobs, "q-again", &path, "people_again", &q).await;
    assert_eq!(second.records_written, 0, "{second:?}");
    assert_eq!(second.already_present, 56, "{second:?}");
    assert_eq!(second.quarantined, 4, "{second:?}");
    assert_eq!(quarantine::read_job(&q, "q-again").unwrap().len(), 4);
    // The same job id over another input (the file grew by a row): its records are added
    // beside the first input's, each under its own input.
    let mut grown = people();
    grown.extend_from_slice(b"60,person 60,60\n");
    std::fs::write(&path, grown).unwrap();
    let third = load(jobs, "q-again", &path, "people_again", &q).await;
    assert_eq!(third.quarantined, 4, "{third:?}");
    let kept = quarantine::read_job(&q, "q-again").unwrap();
    assert_eq!(kept.len(), 8);
    let inputs: std::collections::BTreeSet<&str> = kept.iter().map(|r| r.input.as_str()).collect();
    assert_eq!(inputs.len(), 2, "{inputs:?}");
    assert!(
        inputs.iter().all(|i| i.starts_with("q-again@")),
        "{inputs:?}"
    );
}

async fn an_unwritable_quarantine_fails_the_batch(jobs: &JobClient, dir: &Path) {
    // 40 good rows, then a batch whose one bad row has nowhere to go: the quarantine is
    // under a regular file.
    let mut csv = String::from("id,name,age\n");
    for i in 0..60 {
        let age = if i == 50 {
            "old".to_owned()
        } else {
            (i % 90).to_string()
        };
        csv.push_str(&format!("{i},person {i},{age}\n"));
    }
    let path = write(dir, "unwritable.csv", csv.as_bytes());
    let blocker = dir.join("not-a-dir");
    std::fs::write(&blocker, b"").unwrap();
    let q = Quarantine::dir(blocker.join("q").to_string_lossy());
    let sink = PostgresSink::new("people")
        .key_columns(["id"])
        .url_env(PG_ENV);
    let request = CsvToPostgresChecked::request("q-unwritable", CsvFile::new(&path), sink)
        .batch_size(20)
        .max_in_flight(1)
        .batches_per_activity(1)
        .outage_budget(Duration::ZERO)
        .retry("process", quick_retries(2))
        .quarantine(q);
    let report = run::<CsvToPostgresChecked>(jobs, request).await;
    let report = match report {
        Ok(r) => r,
        Err(e) => panic!("the job ends with its failed batch listed, not {e}"),
    };
    assert_eq!(
        report.status,
        JobStatus::CompletedWithFailures,
        "{report:?}"
    );
    assert_eq!(report.failed_batches, 1, "{report:?}");
    assert_eq!(report.quarantined, 0, "{report:?}");
    let failed = &report.failed[0];
    assert_eq!(failed.first_batch, 2, "{report:?}");
    assert!(
        failed.message.contains("cannot write the quarantine"),
        "{}",
        failed.message
    );
}
