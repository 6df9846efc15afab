//! Recorded histories of every job shape, replayed with the current code: the guard for any
//! change to the workflows (their names, command sequences, and the JSON of requests, reports
//! and carried state), so running jobs and stored histories keep replaying.
//!
//! Each case runs a real job on a dev server, replays its fresh history, then replays the
//! histories recorded before (`tests/fixtures/replay/<case>.<run>.history.json`;
//! `batch.legacy.history.json` is a batch job recorded by an early version of the workflow). After an intended
//! change that old runs must still replay, keep the fixtures; after one they need not (a
//! patch guards it), add the new ones with `BATCH_ORCHESTRA_RECORD_HISTORY=1`, which writes
//! the fixtures of this run (existing ones are kept under a numbered name). `incremental` is a
//! schedule-started incremental run: its `begin` activity and its job id taken from the
//! workflow id.

use std::path::PathBuf;
use std::time::Duration;

use batch_orchestra::batch::{BatchProcessingRequest, PipelineWorkflow};
use batch_orchestra::connectors::csv::{CsvFile, CsvRow};
use batch_orchestra::connectors::noop::NoopSink;
use batch_orchestra::job::schedule::Schedule;
use batch_orchestra::sharded::Grouped;
use batch_orchestra::sharded::ShardedRequest;
use batch_orchestra::sharded::ShardedWorkflow;
use batch_orchestra::stream::StreamRequest;
use batch_orchestra::stream::StreamWorkflow;
use batch_orchestra::testing::{
    CountingSink, RangeSource, RangeToCounting, TickStream, TicksToCounting,
};
use batch_orchestra::{JobClient, pipeline, pipelines};
use batch_orchestra_tests::{Harness, history, quick_retries};
use temporalio_client::{
    UntypedWorkflow, WorkflowExecutionInfo, WorkflowFetchHistoryOptions, WorkflowHandle,
    WorkflowHistory,
};
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};

pipeline! {
    /// CSV files, counted and dropped: the sharded case.
    pub FilesToNoop { source: CsvFile, sink: NoopSink<CsvRow> }
}

fn replayer() -> WorkflowReplayer {
    let options = WorkflowReplayerOptions::new()
        .register_workflow::<PipelineWorkflow<RangeToCounting>>()
        .unwrap()
        .register_workflow::<ShardedWorkflow<FilesToNoop>>()
        .unwrap()
        .register_workflow::<PipelineWorkflow<Grouped<FilesToNoop>>>()
        .unwrap()
        .register_workflow::<StreamWorkflow<TicksToCounting>>()
        .unwrap()
        .build();
    WorkflowReplayer::new(options).unwrap()
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/replay")
}

/// The JSON histories of workflow `id`: every run, first to last.
async fn runs(jobs: &JobClient, id: &str) -> Vec<Vec<u8>> {
    let first = history(jobs, id)
        .await
        .into_iter()
        .find_map(|e| match e.attributes {
            Some(Attributes::WorkflowExecutionStartedEventAttributes(a)) => {
                Some(a.first_execution_run_id)
            }
            _ => None,
        })
        .expect("a started event");
    let mut out = Vec::new();
    let mut run = Some(first);
    while let Some(run_id) = run.take() {
        let info = WorkflowExecutionInfo::builder()
            .namespace("default")
            .workflow_id(id)
            .run_id(run_id)
            .build();
        let handle: WorkflowHandle<_, UntypedWorkflow> =
            WorkflowHandle::new(jobs.temporal().clone(), info);
        let events = handle
            .fetch_history(WorkflowFetchHistoryOptions::default())
            .into_events()
            .await
            .expect("fetch a run's history");
        run = events.iter().find_map(|e| match &e.attributes {
            Some(Attributes::WorkflowExecutionContinuedAsNewEventAttributes(a)) => {
                Some(a.new_execution_run_id.clone())
            }
            _ => None,
        });
        let json = handle
            .fetch_history(WorkflowFetchHistoryOptions::default())
            .to_json()
            .await
            .expect("fetch a run's history as JSON");
        out.push(json);
    }
    out
}

/// Replays the fresh histories of `case`, records them when asked, and replays every
/// recorded history of `case`.
async fn check(case: &str, fresh: Vec<Vec<u8>>) {
    let replayer = replayer();
    for (n, json) in fresh.iter().enumerate() {
        replayer
            .replay_workflow(WorkflowHistory::from_json(json).unwrap())
            .await
            .unwrap_or_else(|e| panic!("{case}: replay of fresh run {n}: {e}"));
    }
    let dir = fixtures();
    if std::env::var_os("BATCH_ORCHESTRA_RECORD_HISTORY").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (n, json) in fresh.iter().enumerate() {
            let mut path = dir.join(format!("{case}.{n}.history.json"));
            let mut version = 1;
            while path.exists() {
                path = dir.join(format!("{case}.{n}.v{version}.history.json"));
                version += 1;
            }
            std::fs::write(path, json).unwrap();
        }
    }
    let mut recorded: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{case}.")))
        })
        .collect();
    recorded.sort();
    assert!(
        !recorded.is_empty(),
        "{case}: no recorded history in {}",
        dir.display()
    );
    for path in recorded {
        let json = std::fs::read(&path).unwrap();
        replayer
            .replay_workflow(WorkflowHistory::from_json(&json).unwrap())
            .await
            .unwrap_or_else(|e| panic!("replay of {}: {e}", path.display()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_histories_of_every_job_shape_replay() {
    let mut h = Harness::with(pipelines![RangeToCounting, FilesToNoop, TicksToCounting]).await;
    let dir = tempfile::tempdir().unwrap();
    for i in 0..6 {
        let mut text = String::from("id,name\n");
        for r in 0..10 {
            text.push_str(&format!(
                "{},{}\n",
                i * 10 + r,
                if r == 3 { "" } else { "x" }
            ));
        }
        text.push_str("ragged\n");
        std::fs::write(dir.path().join(format!("part-{i}.csv")), text).unwrap();
    }
    let jobs = h.jobs.clone();
    h.worker
        .run_until(async move {
            // A batch job with a failed batch, a record error sample and continue-as-new.
            let job = "replay-batch";
            let sink = CountingSink {
                poison_batch: Some(5),
                ..CountingSink::new(job)
            };
            let source = RangeSource {
                bad_every: Some(40),
                ..RangeSource::new(600)
            };
            let req = BatchProcessingRequest::new(job, source, sink)
                .batch_size(25)
                .max_in_flight(3)
                .max_batches_per_run(8)
                .retry("process", quick_retries(2));
            let handle = jobs.start::<RangeToCounting>(req).await.unwrap();
            handle.report().await.unwrap();
            check("batch", runs(&jobs, job).await).await;

            // Its redrive, after the poison is gone.
            CountingSink::heal(job);
            let redrive = handle.redrive(&jobs).await.unwrap();
            redrive.report().await.unwrap();
            check("redrive", runs(&jobs, redrive.job_id()).await).await;

            // A paused, resumed, rate-limited and re-sized job.
            let job = "replay-steered";
            let sink = CountingSink {
                delay_ms: 20,
                ..CountingSink::new(job)
            };
            let req = BatchProcessingRequest::new(job, RangeSource::new(400), sink)
                .batch_size(10)
                .max_in_flight(2);
            let handle = jobs.start::<RangeToCounting>(req).await.unwrap();
            handle.pause().await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            handle.resume().await.unwrap();
            handle.set_rate(2_000).await.unwrap();
            handle.set_max_in_flight(3).await.unwrap();
            handle.report().await.unwrap();
            check("steered", runs(&jobs, job).await).await;

            // A sharded job over six files, two a shard, and one of its shards.
            let pattern = format!("{}/part-*.csv", dir.path().display());
            let job =
                FilesToNoop::request("replay-sharded", CsvFile::new(&pattern), NoopSink::new())
                    .batch_size(4);
            let request = ShardedRequest::new(job)
                .max_inputs_per_shard(2)
                .max_concurrent_shards(2);
            let handle = FilesToNoop::start_sharded(&jobs, request).await.unwrap();
            let report = handle.report().await.unwrap();
            check("sharded", runs(&jobs, "replay-sharded").await).await;
            let shard = report.shard_reports[0].workflow_id.clone();
            check("shard", runs(&jobs, &shard).await).await;

            // A streaming job that ends at its record limit.
            let job = "replay-stream";
            let req = StreamRequest::new(job, TickStream::new(3_000), CountingSink::new(job))
                .batch_size(100)
                .max_records(1_500)
                .executors(1);
            jobs.start_stream::<TicksToCounting>(req)
                .await
                .unwrap()
                .report()
                .await
                .unwrap();
            check("stream", runs(&jobs, job).await).await;

            // A sync of two incremental runs; the second started by a schedule (triggered),
            // so it takes its workflow id as job id and begins from the first's cursor.
            let sync = "replay-sync";
            let first = BatchProcessingRequest::new(
                format!("{sync}-1"),
                RangeSource::new(100),
                CountingSink::new(sync),
            )
            .batch_size(25)
            .incremental(sync);
            jobs.start::<RangeToCounting>(first)
                .await
                .unwrap()
                .report()
                .await
                .unwrap();
            let next =
                BatchProcessingRequest::new(sync, RangeSource::new(150), CountingSink::new(sync))
                    .batch_size(25)
                    .incremental(sync);
            let schedule = jobs
                .schedule::<RangeToCounting>(
                    next,
                    &Schedule::every(Duration::from_secs(3_600)).paused(),
                )
                .await
                .unwrap();
            schedule.trigger().await.unwrap();
            let run = loop {
                if let Some(run) = schedule.describe().await.unwrap().recent_runs.pop() {
                    break run.job_id;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            let report = RangeToCounting::job(&jobs, &run).report().await.unwrap();
            assert_eq!(
                report.job_id, run,
                "a scheduled run's job id is its workflow id"
            );
            assert_eq!(
                report.records_read, 50,
                "the run reads the 50 ids added since the first"
            );
            assert_eq!(report.cursor_from, Some(serde_json::json!({ "end": 100 })));
            schedule.delete().await.unwrap();
            check("incremental", runs(&jobs, &run).await).await;
            Ok::<_, batch_orchestra::JobError>(())
        })
        .await
        .unwrap()
        .unwrap();
}
