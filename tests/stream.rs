//! Streaming jobs on a real Temporal dev server, with the test stream (`TickStream`) and the
//! counting sink: end conditions, record errors, a failing sink, continue-as-new, pause,
//! resume and cancel, and requests refused up front.
//!
//! One dev server for every case: each case has its own job id and sink log.

use std::time::Duration;

use batch_orchestra::batch::BatchProcessingRequest;
use batch_orchestra::failure::RetrySettings;
use batch_orchestra::stream::EndReason;
use batch_orchestra::stream::StreamRequest;
use batch_orchestra::testing::{
    CountingSink, RangeSource, RangeToCounting, TickStream, TicksToCounting,
};
use batch_orchestra::{JobClient, JobError, JobStatus, pipelines};
use batch_orchestra_tests::Harness;

fn quick_retries() -> RetrySettings {
    RetrySettings {
        initial_interval: Duration::from_millis(100),
        maximum_interval: Duration::from_millis(200),
        maximum_attempts: 0,
        ..RetrySettings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_jobs_with_the_test_stream() {
    let mut h = Harness::with(pipelines![TicksToCounting, RangeToCounting]).await;
    let jobs = h.jobs.clone();
    h.worker
        .run_until(async move {
            max_records_ends_the_job_with_every_record_once(&jobs).await;
            idle_timeout_ends_the_job_and_record_errors_keep_positions(&jobs).await;
            a_failing_sink_is_retried_from_the_checkpoint(&jobs).await;
            continue_as_new_keeps_counts_and_checkpoints(&jobs).await;
            pause_resume_and_cancel(&jobs).await;
            requests_of_the_wrong_kind_are_refused(&jobs).await;
            Ok::<_, JobError>(())
        })
        .await
        .unwrap()
        .unwrap();
}

async fn max_records_ends_the_job_with_every_record_once(jobs: &JobClient) {
    let job = "ticks-max-records";
    // The stream has more than the job takes: it stops at exactly 25,000.
    let req = StreamRequest::new(job, TickStream::new(40_000), CountingSink::new(job))
        .batch_size(500)
        .max_records(25_000)
        .executors(1);
    let report = jobs
        .start_stream::<TicksToCounting>(req)
        .await
        .unwrap()
        .report()
        .await
        .unwrap();
    assert_eq!(report.status, JobStatus::Completed);
    assert_eq!(report.ended, Some(EndReason::MaxRecords));
    assert_eq!(report.records_received, 25_000);
    assert_eq!(report.records_written, 25_000);
    assert_eq!(report.already_present, 0);
    assert_eq!(report.checkpoints, vec![Some(24_999)]);
    let log = CountingSink::log(job);
    assert_eq!(log.ids.len(), 25_000);
    assert_eq!(log.ids.last(), Some(&24_999));
    assert_eq!(log.rewrites, 0);
}

async fn idle_timeout_ends_the_job_and_record_errors_keep_positions(jobs: &JobClient) {
    let job = "ticks-idle";
    let req = StreamRequest::new(
        job,
        TickStream::new(1_000).bad_every(100),
        CountingSink::new(job),
    )
    .batch_size(64)
    .idle_timeout(Duration::from_secs(2))
    .max_error_samples(3);
    let report = jobs
        .start_stream::<TicksToCounting>(req)
        .await
        .unwrap()
        .report()
        .await
        .unwrap();
    assert_eq!(report.status, JobStatus::Completed);
    assert_eq!(report.ended, Some(EndReason::Idle));
    assert_eq!(report.records_received, 1_000);
    assert_eq!(report.records_written, 990);
    assert_eq!(report.record_errors, 10);
    let samples: Vec<String> = report.error_samples.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        samples,
        [
            "record 99: tick 99 cannot be decoded",
            "record 199: tick 199 cannot be decoded",
            "record 299: tick 299 cannot be decoded"
        ]
    );
    assert_eq!(CountingSink::log(job).ids.len(), 990);
}

async fn a_failing_sink_is_retried_from_the_checkpoint(jobs: &JobClient) {
    let job = "ticks-failing-sink";
    // Every write of the first two attempts of each slice fails.
    let mut sink = CountingSink::new(job);
    sink.fail_attempts = 2;
    let req = StreamRequest::new(job, TickStream::new(3_000), sink)
        .batch_size(250)
        .max_records(3_000)
        .retry(quick_retries());
    let report = jobs
        .start_stream::<TicksToCounting>(req)
        .await
        .unwrap()
        .report()
        .await
        .unwrap();
    assert_eq!(report.status, JobStatus::Completed);
    let log = CountingSink::log(job);
    assert_eq!(log.ids.len(), 3_000, "every record written once");
    assert_eq!(report.records_written, 3_000);
    assert_eq!(report.checkpoints, vec![Some(2_999)]);
}

async fn continue_as_new_keeps_counts_and_checkpoints(jobs: &JobClient) {
    let job = "ticks-continue-as-new";
    let mut sink = CountingSink::new(job);
    // Slow writes, so the job takes many short slices.
    sink.delay_ms = 20;
    let req = StreamRequest::new(job, TickStream::new(8_000), sink)
        .batch_size(100)
        .buffer(200)
        .checkpoint_interval(Duration::from_millis(200))
        .max_slices_per_run(2)
        .max_records(8_000)
        .executors(2);
    let report = jobs
        .start_stream::<TicksToCounting>(req)
        .await
        .unwrap()
        .report()
        .await
        .unwrap();
    assert_eq!(report.status, JobStatus::Completed);
    assert!(report.runs >= 2, "continued as new: {report:?}");
    assert!(report.slices >= 6, "{} slices", report.slices);
    let log = CountingSink::log(job);
    // Two executors over a stream that each reads from its own checkpoint read it twice:
    // the second delivery is absorbed by the sink, never written twice.
    assert_eq!(log.ids.len() as u64, report.records_written);
    assert_eq!(report.records_received, 8_000);
    assert_eq!(
        report.records_written + report.already_present,
        report.records_received
    );
}

async fn pause_resume_and_cancel(jobs: &JobClient) {
    let job = "ticks-pause";
    let mut sink = CountingSink::new(job);
    sink.delay_ms = 50;
    let req = StreamRequest::new(job, TickStream::new(u64::MAX), sink)
        .batch_size(100)
        .checkpoint_interval(Duration::from_millis(500));
    let handle = jobs.start_stream::<TicksToCounting>(req).await.unwrap();
    wait_until(|| CountingSink::log(job).ids.len() >= 500).await;
    handle.pause().await.unwrap();
    // The running slice ends within its interval; then nothing more is written.
    wait_for_progress(&handle, |p| p.paused && p.running == 0).await;
    let paused_at = CountingSink::log(job).ids.len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(CountingSink::log(job).ids.len(), paused_at, "paused");
    let progress = handle.progress().await.unwrap();
    assert_eq!(progress.report.records_written as usize, paused_at);
    assert!(
        progress.lag.is_some_and(|l| l > 0),
        "lag shown: {:?}",
        progress.lag
    );
    handle.resume().await.unwrap();
    wait_until(|| CountingSink::log(job).ids.len() > paused_at + 200).await;
    handle.cancel().await.unwrap();
    let report = handle.report().await.unwrap();
    assert_eq!(report.status, JobStatus::Cancelled);
    let log = CountingSink::log(job);
    assert_eq!(
        report.records_written as usize,
        log.ids.len(),
        "the report counts every write"
    );
    let last = log.ids.last().copied().unwrap();
    assert_eq!(log.ids.len() as u64, last + 1, "no gap");
    assert_eq!(report.checkpoints, vec![Some(last)]);
}

async fn requests_of_the_wrong_kind_are_refused(jobs: &JobClient) {
    let stream_as_batch = jobs
        .start::<TicksToCounting>(BatchProcessingRequest::new(
            "ticks-as-batch",
            TickStream::new(10),
            CountingSink::new("ticks-as-batch"),
        ))
        .await;
    match stream_as_batch {
        Err(JobError::InvalidRequest(m)) => {
            assert!(m.contains("source `ticks` is a stream"), "{m}")
        }
        other => panic!(
            "expected InvalidRequest, got {:?}",
            other.map(|h| h.job_id().to_owned())
        ),
    }
    let batch_as_stream = jobs
        .start_stream::<RangeToCounting>(StreamRequest::new(
            "range-as-stream",
            RangeSource::new(10),
            CountingSink::new("range-as-stream"),
        ))
        .await;
    match batch_as_stream {
        Err(JobError::InvalidRequest(m)) => {
            assert!(m.contains("source `range` is not a stream"), "{m}")
        }
        other => panic!(
            "expected InvalidRequest, got {:?}",
            other.map(|h| h.job_id().to_owned())
        ),
    }
    let job = "ticks-missing";
    let mut source = TickStream::new(10);
    source.missing_stream = Some("ORDERS".into());
    let failed = jobs
        .start_stream::<TicksToCounting>(StreamRequest::new(job, source, CountingSink::new(job)))
        .await
        .unwrap()
        .report()
        .await;
    match failed {
        Err(JobError::Failed { kind, message, .. }) => {
            assert_eq!(kind, "ConfigError");
            assert!(message.contains("no stream `ORDERS`"), "{message}");
        }
        other => panic!("expected a configuration failure, got {other:?}"),
    }
}

async fn wait_until(mut done: impl FnMut() -> bool) {
    for _ in 0..600 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting");
}

async fn wait_for_progress(
    handle: &batch_orchestra::stream::StreamJobHandle<TicksToCounting>,
    mut done: impl FnMut(&batch_orchestra::stream::StreamProgress<u64>) -> bool,
) {
    for _ in 0..300 {
        if let Ok(p) = handle.progress().await
            && done(&p)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for progress");
}
