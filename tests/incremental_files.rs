//! Incremental runs over files, on a real Temporal dev server: a CSV appended to between runs
//! (a record still being written when a run begins is read whole by the next), a JSON Lines
//! file rewritten between runs (read again from its start, as a new file), a range run
//! between two cursors that leaves the sync's cursor where it was, and a directory where new
//! files land between runs ("new files only": a file renamed into place with an old
//! modification time still read once, a changed file reloaded or refused, a listing of many
//! pages). Every case reads what the sink wrote: each record once, none missing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use batch_orchestra::batch::{JobReport, RequestOf};
use batch_orchestra::connectors::csv::{CsvFile, CsvRow, LineOffset};
use batch_orchestra::connectors::files::{ChangedFiles, FileOffset, Files};
use batch_orchestra::connectors::jsonl::{JsonLinesDir, JsonLinesFile};
use batch_orchestra::{JobClient, JobStatus, Pipeline, TransformError, pipeline, pipelines};
use batch_orchestra_tests::{Harness, read_json_lines};
use serde_json::{Value, json};

fn to_json(row: CsvRow) -> Result<Value, TransformError> {
    serde_json::to_value(&row).map_err(|e| TransformError::new(e.to_string()))
}

pipeline! {
    /// A growing CSV into JSON Lines files.
    pub CsvGrowing { source: CsvFile, transform: to_json, sink: JsonLinesDir }
}

pipeline! {
    /// A growing JSON Lines file into JSON Lines files.
    pub LinesGrowing { source: JsonLinesFile, sink: JsonLinesDir }
}

pipeline! {
    /// The new files of a directory into JSON Lines files.
    pub NewFiles { source: Files<JsonLinesFile>, sink: JsonLinesDir }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_runs_over_growing_files() {
    let Harness {
        server: _server,
        jobs,
        mut worker,
    } = Harness::with(pipelines![CsvGrowing, LinesGrowing, NewFiles]).await;
    let dir = tempfile::tempdir().unwrap();
    worker
        .run_until(async {
            a_grown_csv_is_read_from_where_the_last_run_ended(&jobs, dir.path()).await;
            a_rewritten_file_is_read_again_from_its_start(&jobs, dir.path()).await;
            a_range_run_reads_its_range_and_leaves_the_cursor(&jobs, dir.path()).await;
            only_new_and_changed_files_are_read(&jobs, dir.path()).await;
            a_changed_file_can_be_refused_as_a_record_error(&jobs, dir.path()).await;
            a_listing_of_many_pages_reads_every_file_once(&jobs, dir.path()).await;
        })
        .await
        .expect("the worker runs");
}

/// Runs `request` of `P` to its end; it must complete.
async fn run<P: Pipeline<Source = S>, S: batch_orchestra::SourceConfig>(
    jobs: &JobClient,
    request: RequestOf<P>,
) -> JobReport<S::Offset> {
    let id = request.job_id.clone();
    let report = tokio::time::timeout(
        Duration::from_secs(60),
        jobs.start::<P>(request).await.unwrap().report(),
    )
    .await
    .unwrap_or_else(|_| panic!("run {id} did not end within a minute"))
    .unwrap_or_else(|e| panic!("run {id} failed: {e}"));
    println!(
        "{id}: read {}, written {}, cursor from {:?} to {:?} (range end {:?})",
        report.records_read,
        report.records_written,
        report.cursor_from,
        report.cursor,
        report.cursor_to
    );
    assert_eq!(report.status, JobStatus::Completed, "{id}: {report:?}");
    // The next run finds this one through Temporal's visibility, which shows a completed run
    // a moment after it completes; a run started at once could find the one before.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    report
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

fn csv_rows(ids: std::ops::Range<u64>) -> String {
    ids.map(|i| format!("{i},\"name, {i}\"\n")).collect()
}

fn json_lines(ids: std::ops::Range<u64>, tag: &str) -> String {
    ids.map(|i| format!("{{\"id\":{i},\"tag\":\"{tag}\"}}\n"))
        .collect()
}

/// The ids the sink wrote into `out`, sorted, as numbers (CSV fields are text).
fn ids_written(out: &Path) -> Vec<u64> {
    let mut ids: Vec<u64> = read_json_lines(out)
        .iter()
        .map(|v| match &v["id"] {
            Value::String(s) => s.parse().unwrap(),
            other => other.as_u64().unwrap(),
        })
        .collect();
    ids.sort_unstable();
    ids
}

fn paths(dir: &Path, case: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{case}.in")),
        dir.join(format!("{case}-out")),
    )
}

async fn a_grown_csv_is_read_from_where_the_last_run_ended(jobs: &JobClient, dir: &Path) {
    let (input, out) = paths(dir, "grown");
    let request = |run: &str| {
        CsvGrowing::request(
            run,
            CsvFile::new(input.to_str().unwrap()),
            JsonLinesDir::new(out.to_str().unwrap()),
        )
        .batch_size(40)
        .incremental("grown")
    };
    append(&input, "id,name\n");
    append(&input, &csv_rows(0..100));
    let first = run::<CsvGrowing, _>(jobs, request("grown-1")).await;
    assert_eq!(
        first.records_written, 100,
        "the first run reads the whole file"
    );
    assert_eq!(first.cursor_from, None);

    // 50 more rows and one still being written (no line end yet).
    append(&input, &csv_rows(100..150));
    append(&input, "150,\"name, 1");
    let second = run::<CsvGrowing, _>(jobs, request("grown-2")).await;
    assert_eq!(
        second.records_written, 50,
        "the second run reads the new rows only"
    );
    assert_eq!(second.cursor_from, first.cursor);

    append(&input, "50\"\n");
    append(&input, &csv_rows(151..160));
    let third = run::<CsvGrowing, _>(jobs, request("grown-3")).await;
    assert_eq!(
        third.records_written, 10,
        "the row being written when the second run began, and 9 more"
    );
    assert_eq!(ids_written(&out), (0..160).collect::<Vec<_>>());
    let names: Vec<Value> = read_json_lines(&out)
        .into_iter()
        .filter(|v| v["id"] == "150")
        .collect();
    assert_eq!(names, [json!({"id": "150", "name": "name, 150"})]);
    let cursor = third.cursor.expect("a cursor");
    assert_eq!(
        cursor["line"], 162,
        "the cursor's line: after the header and 160 rows"
    );
}

async fn a_rewritten_file_is_read_again_from_its_start(jobs: &JobClient, dir: &Path) {
    let (input, out) = paths(dir, "rewritten");
    let request = |run: &str| {
        LinesGrowing::request(
            run,
            JsonLinesFile::new(input.to_str().unwrap()),
            JsonLinesDir::new(out.to_str().unwrap()),
        )
        .incremental("rewritten")
    };
    append(&input, &json_lines(0..20, "first"));
    let first = run::<LinesGrowing, _>(jobs, request("rewritten-1")).await;
    assert_eq!(first.records_written, 20);

    // Replaced by a longer file whose first bytes differ: a new file, not a grown one.
    std::fs::write(&input, json_lines(100..130, "second")).unwrap();
    let second = run::<LinesGrowing, _>(jobs, request("rewritten-2")).await;
    assert_eq!(
        second.records_written, 30,
        "the rewritten file is read whole"
    );

    // Replaced by a shorter one: read whole again.
    std::fs::write(&input, json_lines(200..205, "third")).unwrap();
    let third = run::<LinesGrowing, _>(jobs, request("rewritten-3")).await;
    assert_eq!(third.records_written, 5, "the shorter file is read whole");
    let expected: Vec<u64> = (0..20).chain(100..130).chain(200..205).collect();
    assert_eq!(ids_written(&out), expected);
}

async fn a_range_run_reads_its_range_and_leaves_the_cursor(jobs: &JobClient, dir: &Path) {
    let (input, out) = paths(dir, "range");
    let request = |run: &str| {
        LinesGrowing::request(
            run,
            JsonLinesFile::new(input.to_str().unwrap()),
            JsonLinesDir::new(out.to_str().unwrap()),
        )
        .incremental("range")
    };
    append(&input, &json_lines(0..10, "a"));
    let first = run::<LinesGrowing, _>(jobs, request("range-1")).await;
    append(&input, &json_lines(10..30, "b"));
    let second = run::<LinesGrowing, _>(jobs, request("range-2")).await;
    assert_eq!(second.records_written, 20);

    // Replay the second run's range, as a backfill after a fix downstream.
    let (from, to) = (first.cursor.unwrap(), second.cursor.clone().unwrap());
    let replay = request("range-replay")
        .incremental_from(from.clone())
        .incremental_to(to.clone());
    let replayed = run::<LinesGrowing, _>(jobs, replay).await;
    assert_eq!(
        replayed.records_written, 20,
        "the range holds the second run's rows"
    );
    assert_eq!(replayed.cursor_from, Some(from));
    assert_eq!(replayed.cursor_to, Some(to));
    assert_eq!(
        replayed.cursor, None,
        "a range run does not move the sync's cursor"
    );

    append(&input, &json_lines(30..35, "c"));
    let third = run::<LinesGrowing, _>(jobs, request("range-3")).await;
    assert_eq!(
        third.cursor_from, second.cursor,
        "the next live run starts where the last live run ended"
    );
    assert_eq!(third.records_written, 5);
    let mut expected: Vec<u64> = (0..35).chain(10..30).collect();
    expected.sort_unstable();
    assert_eq!(
        ids_written(&out),
        expected,
        "the range written twice, as asked"
    );
}

fn new_files(dir: &Path, out: &Path, run: &str, sync: &str) -> RequestOf<NewFiles> {
    let pattern = format!("{}/*.jsonl", dir.display());
    NewFiles::request(
        run,
        Files::new(JsonLinesFile::new(pattern)).settle(Duration::ZERO),
        JsonLinesDir::new(out.to_str().unwrap()),
    )
    .incremental(sync)
}

/// Writes `text` to `dir/name` the way producers do: into a temporary file elsewhere, then
/// renamed into place. Waits past the settle time, so the next run sees it.
async fn land(dir: &Path, name: &str, text: &str, modified: Option<std::time::SystemTime>) {
    std::fs::create_dir_all(dir).unwrap();
    let tmp = dir.with_extension("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let staged = tmp.join(name);
    std::fs::write(&staged, text).unwrap();
    if let Some(modified) = modified {
        std::fs::File::options()
            .write(true)
            .open(&staged)
            .unwrap()
            .set_modified(modified)
            .unwrap();
    }
    std::fs::rename(&staged, dir.join(name)).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
}

async fn only_new_and_changed_files_are_read(jobs: &JobClient, dir: &Path) {
    let (landing, out) = (dir.join("landing"), dir.join("landing-out"));
    land(&landing, "a.jsonl", &json_lines(0..10, "a"), None).await;
    land(&landing, "b.jsonl", &json_lines(10..20, "b"), None).await;
    let first = run::<NewFiles, _>(jobs, new_files(&landing, &out, "landing-1", "landing")).await;
    assert_eq!(first.records_written, 20, "a first run reads every file");

    // A file renamed into place keeps the modification time its writer gave it (a year
    // ago here): still new to the directory.
    let a_year_ago = std::time::SystemTime::now() - Duration::from_secs(365 * 86_400);
    land(
        &landing,
        "c.jsonl",
        &json_lines(20..30, "c"),
        Some(a_year_ago),
    )
    .await;
    let second = run::<NewFiles, _>(jobs, new_files(&landing, &out, "landing-2", "landing")).await;
    assert_eq!(
        second.records_written, 10,
        "the second run reads the new file only, whatever its modification time"
    );

    // `a` written again with other records: reloaded as a new version.
    land(&landing, "a.jsonl", &json_lines(100..105, "a2"), None).await;
    let third = run::<NewFiles, _>(jobs, new_files(&landing, &out, "landing-3", "landing")).await;
    assert_eq!(
        third.records_written, 5,
        "the changed file is reloaded, alone"
    );
    let fourth = run::<NewFiles, _>(jobs, new_files(&landing, &out, "landing-4", "landing")).await;
    assert_eq!(fourth.records_read, 0, "nothing new: nothing read");
    let expected: Vec<u64> = (0..30).chain(100..105).collect();
    assert_eq!(
        ids_written(&out),
        expected,
        "each record of each version once"
    );
}

async fn a_changed_file_can_be_refused_as_a_record_error(jobs: &JobClient, dir: &Path) {
    let (landing, out) = (dir.join("refusing"), dir.join("refusing-out"));
    let request = |run: &str| {
        let mut request = new_files(&landing, &out, run, "refusing").max_record_errors(10);
        request.source.changed = ChangedFiles::Refuse;
        request
    };
    land(&landing, "a.jsonl", &json_lines(0..10, "a"), None).await;
    land(&landing, "b.jsonl", &json_lines(10..20, "b"), None).await;
    run::<NewFiles, _>(jobs, request("refusing-1")).await;
    // Written again in place (a file replaced by a rename is a new file, and read).
    std::fs::write(landing.join("b.jsonl"), json_lines(50..60, "b2")).unwrap();
    land(&landing, "c.jsonl", &json_lines(20..25, "c"), None).await;
    let second = run::<NewFiles, _>(jobs, request("refusing-2")).await;
    assert_eq!(second.records_written, 5, "the new file is read");
    assert_eq!(
        second.record_errors, 1,
        "the changed file is one record error"
    );
    let sample = &second.error_samples[0];
    assert!(
        sample
            .message
            .contains("`b.jsonl` changed after an earlier run loaded it"),
        "{sample:?}"
    );
    assert_eq!(ids_written(&out), (0..25).collect::<Vec<_>>());
}

async fn a_listing_of_many_pages_reads_every_file_once(jobs: &JobClient, dir: &Path) {
    let (landing, out) = (dir.join("many"), dir.join("many-out"));
    std::fs::create_dir_all(&landing).unwrap();
    // More files than a listing page (200) and than a reader keeps (256).
    for i in 0..300u64 {
        std::fs::write(
            landing.join(format!("{i:04}.jsonl")),
            json_lines(i * 2..i * 2 + 2, "many"),
        )
        .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let request = new_files(&landing, &out, "many-1", "many").max_in_flight(8);
    let report = run::<NewFiles, _>(jobs, request).await;
    assert_eq!(report.records_written, 600);
    assert_eq!(report.batches, 300, "one batch a file");
    assert_eq!(ids_written(&out), (0..600).collect::<Vec<_>>());
    let last: &FileOffset<LineOffset> = report.end_offset.as_ref().expect("an end offset");
    assert_eq!(last.key, "0299.jsonl");
}
