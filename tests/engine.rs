//! The engine end to end on a real Temporal dev server, with the test source and sink.

use std::time::{Duration, Instant};

use batch_orchestra::batch::{BatchProcessingRequest, RequestOf};
use batch_orchestra::snapshot::SnapshotTarget;
use batch_orchestra::testing::{CountingSink, PAYLOAD_MARKER, RangeSource, RangeToCounting};
use batch_orchestra::{JobClient, JobError, JobStatus};
use batch_orchestra_tests::{Harness, history, quick_retries};
use prost::Message;
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;

fn request(job: &str, count: u64, sink: CountingSink) -> RequestOf<RangeToCounting> {
    BatchProcessingRequest::new(job, RangeSource::new(count), sink)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_are_exact_and_offsets_continuous_across_continue_as_new() {
    let mut h = Harness::start().await;
    let job = "exact-counts";
    let req = request(job, 2_537, CountingSink::new(job))
        .batch_size(100)
        .max_in_flight(4)
        .plan_ahead(6)
        .max_batches_per_run(5);
    let report = h
        .worker
        .run_until(async { h.jobs.start::<RangeToCounting>(req).await?.report().await })
        .await
        .unwrap()
        .unwrap();

    assert_eq!(report.status, JobStatus::Completed);
    assert_eq!(report.records_read, 2_537);
    assert_eq!(report.records_written, 2_537);
    assert_eq!(report.already_present, 0);
    assert_eq!(report.record_errors, 0);
    assert_eq!(report.batches, 26);
    assert_eq!(report.runs, 6, "26 batches at 5 per run take 6 runs");
    assert_eq!(report.start_offset, None);
    assert_eq!(report.end_offset, Some(2_537));
    let log = CountingSink::log(job);
    assert_eq!(log.ids.len(), 2_537, "every record written");
    assert_eq!(log.ids.first(), Some(&0));
    assert_eq!(
        log.ids.last(),
        Some(&2_536),
        "no gap: ids 0..2537 all present"
    );
    assert_eq!(log.rewrites, 0, "no record offered twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_from_a_start_offset() {
    let mut h = Harness::start().await;
    let job = "start-offset";
    let req = request(job, 1_000, CountingSink::new(job))
        .batch_size(64)
        .start_at(600);
    let report = h
        .worker
        .run_until(async { h.jobs.start::<RangeToCounting>(req).await?.report().await })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.records_written, 400);
    assert_eq!(report.start_offset, Some(600));
    assert_eq!(report.end_offset, Some(1_000));
    let log = CountingSink::log(job);
    assert_eq!(
        log.ids.iter().copied().collect::<Vec<_>>(),
        (600..1_000).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_query_pause_and_resume() {
    let mut h = Harness::start().await;
    let job = "pause-resume";
    let sink = CountingSink {
        delay_ms: 150,
        ..CountingSink::new(job)
    };
    let req = request(job, 600, sink).batch_size(10).max_in_flight(2);
    let outcome = h
        .worker
        .run_until(async {
            let handle = h.jobs.start::<RangeToCounting>(req).await?;
            // Wait until some batches are done.
            loop {
                let p = handle.progress().await?;
                if p.report.batches >= 2 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            handle.set_max_in_flight(3).await?;
            handle.pause().await?;
            // Running batches finish; then nothing new starts.
            let paused = loop {
                let p = handle.progress().await?;
                if p.paused && p.in_flight == 0 {
                    break p;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            assert_eq!(paused.max_in_flight, 3, "the signal changed the window");
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            let still = handle.progress().await?;
            assert_eq!(
                still.report.batches, paused.report.batches,
                "no batch ran while paused"
            );
            assert!(
                still.report.records_written < 600,
                "the job did not finish while paused"
            );
            handle.resume().await?;
            handle.report().await
        })
        .await
        .unwrap();
    let report = outcome.unwrap();
    assert_eq!(report.records_written, 600);
    assert_eq!(CountingSink::log(job).ids.len(), 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_failing_twice_then_succeeding_is_retried() {
    let mut h = Harness::start().await;
    let job = "retry-twice";
    let sink = CountingSink {
        fail_attempts: 2,
        ..CountingSink::new(job)
    };
    let req = request(job, 300, sink)
        .batch_size(100)
        .batches_per_activity(1)
        .retry("process", quick_retries(5));
    let report = h
        .worker
        .run_until(async { h.jobs.start::<RangeToCounting>(req).await?.report().await })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.records_written, 300);
    let log = CountingSink::log(job);
    assert_eq!(log.calls, 9, "three attempts for each of three batches");
    assert_eq!(log.ids.len(), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_max_failed_batches_zero_exhausted_retries_fail_the_job() {
    let mut h = Harness::start().await;
    let job = "retry-exhausted";
    let sink = CountingSink {
        fail_attempts: 10,
        ..CountingSink::new(job)
    };
    let req = request(job, 100, sink)
        .batch_size(100)
        .max_failed_batches(0)
        .retry("range-to-counting.process", quick_retries(2));
    let err = h
        .worker
        .run_until(async { h.jobs.start::<RangeToCounting>(req).await?.report().await })
        .await
        .unwrap()
        .unwrap_err();
    let JobError::Failed { message, kind, .. } = &err else {
        panic!("expected a failed job, got {err}")
    };
    assert_eq!(kind, "FailedBatchLimit");
    assert!(
        message.contains("unavailable on attempt 2 of batch 0 (injected)"),
        "{message}"
    );
    assert!(message.contains("batch 0 (records 0-99)"), "{message}");
    assert!(
        !message.contains("job `retry-exhausted`"),
        "the job id is not repeated: {err}"
    );
    assert_eq!(CountingSink::log(job).calls, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_batch_fails_alone_and_a_redrive_recovers_it() {
    let mut h = Harness::start().await;
    let job = "poison";
    let sink = CountingSink {
        poison_batch: Some(5),
        ..CountingSink::new(job)
    };
    // Groups of 4 batches: the group holding batch 5 fails, each of its batches is rerun
    // alone, and only batch 5 fails for good.
    let req = request(job, 1_000, sink)
        .batch_size(50)
        .max_in_flight(3)
        .retry("process", quick_retries(3));
    let (report, failed_again, recovered) = h
        .worker
        .run_until(async {
            let handle = h.jobs.start::<RangeToCounting>(req).await.unwrap();
            let report = handle.report().await.unwrap();
            // Still poisoned: the redrive fails again, and says so.
            let first = handle.redrive(&h.jobs).await.unwrap();
            assert_eq!(first.job_id(), "poison-redrive-1");
            let failed_again = first.report().await.unwrap();
            CountingSink::heal(job);
            let second = first.redrive(&h.jobs).await.unwrap();
            assert_eq!(second.job_id(), "poison-redrive-2");
            let recovered = second.report().await.unwrap();
            let none_left = second.redrive(&h.jobs).await;
            assert!(
                matches!(none_left, Err(JobError::NotRedrivable { .. })),
                "nothing left to redrive"
            );
            (report, failed_again, recovered)
        })
        .await
        .unwrap();
    assert_eq!(report.status, JobStatus::CompletedWithFailures);
    assert!(!report.is_complete());
    assert!(matches!(
        report.clone().into_result(),
        Err(JobError::CompletedWithFailures {
            failed_batches: 1,
            ..
        })
    ));
    assert_eq!(report.failed_batches, 1);
    assert_eq!(report.batches, 19);
    assert_eq!(
        report.records_written + report.already_present,
        950,
        "a batch of the failed group written before the poison counts as already present on rerun"
    );
    assert_eq!(
        report.end_offset,
        Some(1_000),
        "the job went past the failed batch"
    );
    let failed = &report.failed[0];
    assert_eq!((failed.first_batch, failed.batches), (5, 1));
    assert_eq!((failed.first_record, failed.records), (250, 50));
    assert_eq!((failed.start, failed.end), (250, 300));
    assert_eq!(failed.kind, "TransientError");
    assert_eq!(failed.attempts, 2, "rerun alone with two attempts");
    assert!(
        failed
            .message
            .contains("cannot take batch 5 (injected poison)"),
        "{failed:?}"
    );

    assert_eq!(failed_again.redrive_of.as_deref(), Some(job));
    assert_eq!(failed_again.job_id, "poison-redrive-1");
    assert_eq!(failed_again.status, JobStatus::CompletedWithFailures);
    assert_eq!(failed_again.records_written, 0);
    assert_eq!(
        failed_again.failed[0].first_batch, 5,
        "same batch number as in the job"
    );
    assert_eq!(recovered.job_id, "poison-redrive-2");
    assert_eq!(recovered.status, JobStatus::Completed, "{recovered:?}");
    assert_eq!(recovered.records_written, 50);
    assert_eq!(recovered.batches, 1);
    let log = CountingSink::log(job);
    assert_eq!(
        log.ids.len(),
        1_000,
        "every record present once the poison is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_reports_its_counts_and_a_redrive_finishes_it() {
    let mut h = Harness::start().await;
    let job = "failed-then-redriven";
    let sink = CountingSink {
        poison_batch: Some(5),
        ..CountingSink::new(job)
    };
    // No failed batch allowed: the poison batch fails the job. One activity at a time, so
    // the job stops in the middle of its input.
    let req = request(job, 1_000, sink)
        .batch_size(50)
        .max_in_flight(1)
        .max_failed_batches(0)
        .retry("process", quick_retries(2));
    let (err, redriven) = h
        .worker
        .run_until(async {
            let handle = h.jobs.start::<RangeToCounting>(req).await.unwrap();
            let err = handle.report().await.unwrap_err();
            CountingSink::heal(job);
            let redrive = handle.redrive(&h.jobs).await.unwrap();
            (err, redrive.report().await)
        })
        .await
        .unwrap();
    let JobError::Failed { kind, report, .. } = &err else {
        panic!("expected a failed job, got {err}")
    };
    assert_eq!(kind, "FailedBatchLimit");
    let report: batch_orchestra::batch::JobReport<u64> =
        serde_json::from_value(*report.clone().expect("the failure carries the report")).unwrap();
    assert_eq!(report.status, JobStatus::Failed);
    assert!(report.failure.is_some());
    // The poison batch's whole group failed with it: every batch of it is listed.
    assert_eq!(report.failed.len(), 1, "one range: {:?}", report.failed);
    let failed = &report.failed[0];
    assert_eq!(report.failed_batches, failed.batches);
    assert!(
        failed.first_record <= 250 && failed.first_record + failed.records >= 300,
        "the failed range holds the poison batch: {failed:?}"
    );
    let stopped = report
        .stopped_at
        .clone()
        .expect("a failed report says where it stopped");
    assert!(
        stopped.record >= failed.first_record + failed.records,
        "a failed range counts as done: {stopped:?}"
    );
    assert_eq!(report.end_offset, stopped.offset);
    assert!(stopped.record < 1_000, "stopped mid-input: {stopped:?}");
    assert_eq!(
        report.records_written + report.already_present,
        failed.first_record,
        "every batch before the failed range was written and counted: {report:?}"
    );

    // The redrive reruns the failed range and the rest, and the job is whole.
    let redriven = redriven.unwrap();
    assert_eq!(redriven.job_id, "failed-then-redriven-redrive-1");
    assert_eq!(redriven.status, JobStatus::Completed, "{redriven:?}");
    assert_eq!(
        redriven.end_offset,
        Some(1_000),
        "the redrive read to the end"
    );
    let log = CountingSink::log(job);
    assert_eq!(
        log.ids.len(),
        1_000,
        "every record written once the job is redriven"
    );
    let failed_before: u64 = report
        .failed
        .iter()
        .filter(|f| f.first_record < stopped.record)
        .map(|f| f.records)
        .sum();
    assert_eq!(
        redriven.records_read,
        failed_before + (1_000 - stopped.record),
        "the redrive read the failed ranges and the rest, nothing else: {report:?} {redriven:?}"
    );
    assert_eq!(
        redriven.records_written + redriven.already_present,
        redriven.records_read
    );
}

/// A job that fails stops its running batches as a cancel does and waits for them, so its
/// report counts exactly what the sink holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_drains_its_running_batches_before_it_reports() {
    let mut h = Harness::start().await;
    let job = "failing-drains";
    let sink = CountingSink {
        poison_batch: Some(6),
        delay_ms: 300,
        ..CountingSink::new(job)
    };
    let req = request(job, 2_000, sink)
        .batch_size(20)
        .max_in_flight(4)
        .max_batches_per_activity(4)
        .max_failed_batches(0)
        .retry("process", quick_retries(1));
    let err = h
        .worker
        .run_until(async { h.jobs.start::<RangeToCounting>(req).await?.report().await })
        .await
        .unwrap()
        .unwrap_err();
    let JobError::Failed { kind, report, .. } = &err else {
        panic!("expected a failed job, got {err}")
    };
    assert_eq!(kind, "FailedBatchLimit");
    let report: batch_orchestra::batch::JobReport<u64> =
        serde_json::from_value(*report.clone().unwrap()).unwrap();
    let failure = report.failure.clone().unwrap();
    assert!(
        failure.starts_with(&format!("{} batches failed", report.failed_batches)),
        "the cause counts the whole failed group: {failure}"
    );
    // Give a write that outlived the job time to land, had it not been awaited.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    // A failed group may have written part of its batches (uncounted: a redrive finds them
    // already present); every other record the sink holds is counted.
    let ids = CountingSink::log(job).ids;
    let in_failed = |id: u64| {
        report
            .failed
            .iter()
            .any(|f| f.first_record <= id && id < f.first_record + f.records)
    };
    let outside = ids.iter().filter(|id| !in_failed(**id)).count() as u64;
    assert_eq!(
        report.records_written, outside,
        "the failed report counts every record the sink holds outside its failed ranges: {report:?}"
    );
    assert!(ids.len() < 2_000, "the job stopped early");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_call_is_abandoned_retried_and_shown_as_stuck() {
    let mut h = Harness::start().await;
    let job = "hung";
    let sink = CountingSink {
        hang_batch: Some(2),
        ..CountingSink::new(job)
    };
    let req = request(job, 500, sink)
        .batch_size(50)
        .batches_per_activity(1)
        .call_timeout(Duration::from_secs(3))
        .stuck_after(Duration::from_secs(1))
        .retry("process", quick_retries(3));
    let started = Instant::now();
    let (report, stuck) = h
        .worker
        .run_until(async {
            let handle = h.jobs.start::<RangeToCounting>(req).await.unwrap();
            let mut stuck = None;
            while stuck.is_none() && started.elapsed() < Duration::from_secs(10) {
                if let Ok(p) = handle.progress().await {
                    stuck = p.stuck().next().cloned();
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            (handle.report().await.unwrap(), stuck)
        })
        .await
        .unwrap();
    assert_eq!(report.status, JobStatus::Completed);
    assert_eq!(report.records_written, 500);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let stuck = stuck.expect("the hung batch was flagged as stuck");
    assert_eq!(stuck.first_batch, 2);
    assert_eq!(stuck.attempt, Some(1));
    assert!(stuck.age_ms >= 1_000);
    let log = CountingSink::log(job);
    assert_eq!(log.ids.len(), 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_errors_fail_fast_with_the_original_message() {
    let mut h = Harness::start().await;
    let (sink_job, source_job) = ("fatal-sink", "missing-source");
    let sink = CountingSink {
        fatal_at_batch: Some(1),
        ..CountingSink::new(sink_job)
    };
    let bad_sink = request(sink_job, 500, sink)
        .batch_size(100)
        .max_in_flight(1);
    let bad_source = BatchProcessingRequest::new(
        source_job,
        RangeSource {
            missing_input: Some("/data/missing.csv".into()),
            ..RangeSource::new(10)
        },
        CountingSink::new(source_job),
    );
    let started = Instant::now();
    let (sink_err, source_err) = h
        .worker
        .run_until(async {
            let a = h.jobs.start::<RangeToCounting>(bad_sink).await.unwrap();
            let b = h.jobs.start::<RangeToCounting>(bad_source).await.unwrap();
            (a.report().await.unwrap_err(), b.report().await.unwrap_err())
        })
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "no retries of configuration errors"
    );
    match sink_err {
        JobError::Failed {
            message,
            kind,
            job_id,
            ..
        } => {
            assert_eq!(job_id, sink_job);
            assert_eq!(kind, "ConfigError");
            assert!(
                message.contains("sink `fatal-sink` refuses batch 1 (injected)"),
                "{message}"
            );
        }
        other => panic!("expected a failed job, got {other}"),
    }
    assert_eq!(
        CountingSink::log(sink_job).calls,
        2,
        "batch 0 once, batch 1 once: no retry"
    );
    match source_err {
        JobError::Failed { message, kind, .. } => {
            assert_eq!(kind, "ConfigError");
            assert!(
                message.contains("cannot open /data/missing.csv"),
                "{message}"
            );
            assert!(message.contains("building source `range`"), "{message}");
        }
        other => panic!("expected a failed job, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_errors_are_counted_and_the_limit_fails_the_job() {
    let mut h = Harness::start().await;
    let (ok_job, limit_job) = ("record-errors", "record-error-limit");
    let source = RangeSource {
        bad_every: Some(10),
        ..RangeSource::new(1_000)
    };
    let counted = BatchProcessingRequest::new(ok_job, source.clone(), CountingSink::new(ok_job))
        .batch_size(100);
    let limited = BatchProcessingRequest::new(limit_job, source, CountingSink::new(limit_job))
        .batch_size(100)
        .max_in_flight(1)
        .batches_per_activity(1)
        .max_record_errors(25);
    let (report, err) = h
        .worker
        .run_until(async {
            let a = h.jobs.start::<RangeToCounting>(counted).await.unwrap();
            let b = h.jobs.start::<RangeToCounting>(limited).await.unwrap();
            (a.report().await.unwrap(), b.report().await.unwrap_err())
        })
        .await
        .unwrap();
    assert_eq!(report.records_read, 1_000);
    assert_eq!(report.records_written, 900);
    assert_eq!(report.record_errors, 100);
    assert_eq!(report.error_samples.len(), 20, "samples are bounded");
    assert_eq!(report.error_samples[0].position.record, 9);
    assert!(
        report.error_samples[0]
            .message
            .contains("record 9 is unreadable")
    );
    assert_eq!(CountingSink::log(ok_job).ids.len(), 900);

    match err {
        JobError::Failed { message, kind, .. } => {
            assert_eq!(kind, "RecordErrorLimit");
            assert!(
                message.contains("30 record errors, more than max_record_errors = 25"),
                "{message}"
            );
            assert!(
                message.contains("first: record 9: record 9 is unreadable"),
                "{message}"
            );
        }
        other => panic!("expected a failed job, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_throttle_pauses_every_n_records() {
    let mut h = Harness::start().await;
    let job = "throttled";
    let req = request(job, 300, CountingSink::new(job))
        .batch_size(50)
        .max_in_flight(2)
        .batches_per_activity(1)
        .throttle(100, Duration::from_millis(300));
    let jobs = &h.jobs;
    let (report, events) = h
        .worker
        .run_until(async {
            let report = jobs
                .start::<RangeToCounting>(req)
                .await
                .unwrap()
                .report()
                .await
                .unwrap();
            (report, history(jobs, job).await)
        })
        .await
        .unwrap();
    assert_eq!(report.records_written, 300);
    let pauses: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.attributes {
            Some(Attributes::TimerStartedEventAttributes(t)) => t.start_to_fire_timeout,
            _ => None,
        })
        .collect();
    assert_eq!(
        pauses.len(),
        2,
        "a pause after 100 and after 200 records, none at the end"
    );
    assert!(
        pauses
            .iter()
            .all(|d| d.nanos == 300_000_000 && d.seconds == 0),
        "{pauses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_start_of_a_running_job_is_refused() {
    let mut h = Harness::start().await;
    let job = "twice";
    let slow = CountingSink {
        delay_ms: 200,
        ..CountingSink::new(job)
    };
    let req = request(job, 200, slow).batch_size(20).max_in_flight(1);
    let (second, report) = h
        .worker
        .run_until(async {
            let handle = h.jobs.start::<RangeToCounting>(req.clone()).await.unwrap();
            let second = h.jobs.start::<RangeToCounting>(req).await;
            (second, handle.report().await)
        })
        .await
        .unwrap();
    match second {
        Err(JobError::AlreadyRunning { job_id }) => assert_eq!(job_id, job),
        Err(other) => panic!("expected AlreadyRunning, got {other}"),
        Ok(_) => panic!("a second start of a running job was accepted"),
    }
    assert_eq!(report.unwrap().records_written, 200);
    assert_eq!(CountingSink::log(job).rewrites, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_the_job() {
    let mut h = Harness::start().await;
    let job = "cancelled";
    let slow = CountingSink {
        delay_ms: 200,
        ..CountingSink::new(job)
    };
    let dir = tempfile::tempdir().unwrap();
    let req = request(job, 10_000, slow)
        .batch_size(10)
        .max_in_flight(3)
        .heartbeat_timeout(Duration::from_secs(2))
        .snapshot(SnapshotTarget::directory(dir.path().to_string_lossy()));
    let (report, took) = h
        .worker
        .run_until(async {
            let handle = h.jobs.start::<RangeToCounting>(req).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            let asked = Instant::now();
            handle.cancel().await.unwrap();
            let report = handle.report().await.unwrap();
            let took = asked.elapsed();
            // Nothing lands after the report said Cancelled.
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            (report, took)
        })
        .await
        .unwrap();
    assert_eq!(report.status, JobStatus::Cancelled);
    assert!(matches!(
        report.clone().into_result(),
        Err(JobError::Cancelled { .. })
    ));
    assert!(took < Duration::from_secs(5), "cancel took {took:?}");
    let log = CountingSink::log(job);
    assert!(log.ids.len() < 10_000);
    assert!(!log.ids.is_empty());
    assert_eq!(
        report.records_written,
        log.ids.len() as u64,
        "the report counts exactly what the sink holds"
    );
    let end = report.end_offset.unwrap();
    assert_eq!(
        log.ids.iter().copied().filter(|id| *id < end).count() as u64,
        end,
        "everything before the end offset is written: a job from there resumes"
    );
    let saved = std::fs::read_to_string(dir.path().join(format!("{job}.json"))).unwrap();
    assert!(saved.contains("Cancelled"), "{saved}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_is_snapshotted_to_a_directory() {
    let mut h = Harness::start().await;
    let dir = tempfile::tempdir().unwrap();
    let job = "snapshotted";
    let req = request(job, 250, CountingSink::new(job))
        .batch_size(50)
        .max_batches_per_run(2)
        .snapshot(SnapshotTarget::directory(dir.path().to_string_lossy()));
    let report = h
        .worker
        .run_until(async { h.jobs.start::<RangeToCounting>(req).await?.report().await })
        .await
        .unwrap()
        .unwrap();
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("snapshotted.json")).unwrap())
            .unwrap();
    assert_eq!(saved["status"], "Completed");
    assert_eq!(saved["records_written"], 250);
    assert_eq!(saved["runs"], 3);
    assert_eq!(saved["end_offset"], 250);
    assert_eq!(report.runs, 3);
}

/// Runs a 40-batch job of records with `payload` bytes each and checks its history: returns
/// events and encoded bytes per batch.
async fn history_per_batch(jobs: &JobClient, job: &str, payload: usize) -> (f64, f64) {
    let source = RangeSource {
        payload_bytes: payload,
        ..RangeSource::new(2_000)
    };
    let req = BatchProcessingRequest::new(job, source, CountingSink::new(job))
        .batch_size(50)
        .max_in_flight(4);
    let report = jobs
        .start::<RangeToCounting>(req)
        .await
        .unwrap()
        .report()
        .await
        .unwrap();
    let events = history(jobs, job).await;
    assert_eq!(report.batches, 40);
    assert_eq!(report.runs, 1);
    let marker = PAYLOAD_MARKER.as_bytes();
    for event in &events {
        let bytes = event.encode_to_vec();
        assert!(
            !bytes.windows(marker.len()).any(|w| w == marker),
            "record content in history: event {}",
            event.event_id
        );
    }
    let bytes: usize = events.iter().map(|e| e.encoded_len()).sum();
    (events.len() as f64 / 40.0, bytes as f64 / 40.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_small_and_holds_no_record_content() {
    let mut h = Harness::start().await;
    let jobs = &h.jobs;
    let ((small_events, small_bytes), (big_events, big_bytes)) = h
        .worker
        .run_until(async {
            (
                history_per_batch(jobs, "history-small", 16).await,
                history_per_batch(jobs, "history-big", 4_000).await,
            )
        })
        .await
        .unwrap();
    println!(
        "history per batch: {small_events:.1} events, {small_bytes:.0} bytes (16 B records); {big_events:.1} events, {big_bytes:.0} bytes (4 kB records)"
    );
    assert!(
        small_events <= 6.0 && big_events <= 6.0,
        "events per batch: {small_events}, {big_events}"
    );
    assert!(
        small_bytes <= 2_048.0 && big_bytes <= 2_048.0,
        "bytes per batch: {small_bytes}, {big_bytes}"
    );
    assert!(
        (big_bytes - small_bytes).abs() < 200.0,
        "history does not grow with record size: {small_bytes} vs {big_bytes}"
    );
}

batch_orchestra::pipeline! {
    /// CSV rows counted and dropped: what a long-lived worker reads from a file.
    pub CsvToNoop {
        source: batch_orchestra::connectors::csv::CsvFile,
        sink: batch_orchestra::connectors::noop::NoopSink<batch_orchestra::connectors::csv::CsvRow>,
    }
}

/// One worker, three jobs on one path: the file overwritten in place, then replaced by
/// rename with another header. Each job reads the file as it is when it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_lived_worker_sees_a_changed_file() {
    use batch_orchestra::connectors::csv::CsvFile;
    use batch_orchestra::connectors::noop::NoopSink;
    let mut h = Harness::with(batch_orchestra::pipelines![CsvToNoop]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.csv");
    let path_text = path.to_string_lossy().into_owned();
    std::fs::write(&path, "a,b\n1,2\n3,4\n").unwrap();
    let counts = h
        .worker
        .run_until(async {
            let mut counts = Vec::new();
            for (job, content) in [
                ("same-path-1", None),
                ("same-path-2", Some("a,b\n1,2\n3,4\n5,6\n7,8\n9,10\n")),
                ("same-path-3", Some("x,y,z\n1,2,3\n")),
            ] {
                match (job, content) {
                    ("same-path-3", Some(text)) => {
                        let tmp = dir.path().join("next.csv");
                        std::fs::write(&tmp, text).unwrap();
                        std::fs::rename(&tmp, &path).unwrap();
                    }
                    (_, Some(text)) => std::fs::write(&path, text).unwrap(),
                    _ => {}
                }
                let request = CsvToNoop::request(job, CsvFile::new(&path_text), NoopSink::new());
                let report = h
                    .jobs
                    .start::<CsvToNoop>(request)
                    .await
                    .unwrap()
                    .report()
                    .await
                    .unwrap();
                counts.push((report.records_read, report.record_errors));
            }
            counts
        })
        .await
        .unwrap();
    assert_eq!(
        counts,
        vec![(2, 0), (5, 0), (1, 0)],
        "each job read the file as it was"
    );
}

/// A file rewritten while its job runs: the batches planned over the old file fail alone,
/// each naming the change, instead of reading other records at the planned offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_changed_mid_job_fails_its_remaining_batches_by_name() {
    use batch_orchestra::connectors::csv::CsvFile;
    use batch_orchestra::connectors::noop::NoopSink;
    let mut h = Harness::with(batch_orchestra::pipelines![CsvToNoop]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.csv");
    let rows = |tag: &str| {
        let mut text = String::from("a,b\n");
        for i in 0..1_000 {
            text.push_str(&format!("{i},{tag}\n"));
        }
        text
    };
    std::fs::write(&path, rows("old")).unwrap();
    let path_text = path.to_string_lossy().into_owned();
    // 100 rows a batch at 200 rows/s: the file changes while most batches are to come.
    let request = CsvToNoop::request("changed-mid-job", CsvFile::new(&path_text), NoopSink::new())
        .batch_size(100)
        .max_in_flight(1)
        .max_batches_per_activity(1)
        .max_records_per_s(200)
        .max_failed_batches(100);
    let report = h
        .worker
        .run_until(async {
            let handle = h.jobs.start::<CsvToNoop>(request).await.unwrap();
            while handle.progress().await.unwrap().report.records_read == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            std::fs::write(&path, rows("new")).unwrap();
            handle.report().await
        })
        .await
        .unwrap();
    let report = report.unwrap();
    assert_eq!(
        report.status,
        JobStatus::CompletedWithFailures,
        "{report:?}"
    );
    assert!(
        report.records_written >= 100,
        "batches before the change were written"
    );
    let failed: u64 = report.failed.iter().map(|f| f.records).sum();
    assert_eq!(
        report.records_written + failed,
        1_000,
        "every planned row written before the change or in a failed batch: {report:?}"
    );
    for f in &report.failed {
        assert_eq!(f.kind, "BatchError");
        assert!(
            f.message
                .contains("the input of source `csv-file` changed since the job planned it"),
            "{f:?}"
        );
    }
}

batch_orchestra::pipeline! {
    /// JSON Lines in, JSON Lines out: a lossless round trip.
    pub JsonLinesCopy {
        source: batch_orchestra::connectors::jsonl::JsonLinesFile,
        sink: batch_orchestra::connectors::jsonl::JsonLinesDir,
    }
}

/// Every value survives a trip through the engine unchanged and in order; a line that is not
/// JSON is a record error naming its line and byte; blank lines are skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_round_trip_keeps_every_value() {
    use batch_orchestra::connectors::jsonl::{JsonLinesDir, JsonLinesFile};
    let mut h = Harness::with(batch_orchestra::pipelines![JsonLinesCopy]).await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let mut values = Vec::new();
    let mut text = String::new();
    for i in 0..2_500u64 {
        let value = serde_json::json!({
            "id": i,
            "name": format!("événement {i} \"quoted\""),
            "tags": ["a", i % 3, null, {"deep": [i as f64 / 8.0]}],
            "flag": i % 2 == 0,
            "missing": null,
        });
        text.push_str(&value.to_string());
        text.push('\n');
        if i == 1_200 {
            text.push_str("\n   \n{\"broken\": tru\n");
        }
        values.push(value);
    }
    std::fs::write(&input, &text).unwrap();
    let broken_byte = text.find("{\"broken\"").unwrap() as u64;
    let out = dir.path().join("out");
    let request = JsonLinesCopy::request(
        "jsonl-round-trip",
        JsonLinesFile::new(input.to_string_lossy()),
        JsonLinesDir::new(out.to_string_lossy()),
    )
    .batch_size(300);
    let report = h
        .worker
        .run_until(async { h.jobs.start::<JsonLinesCopy>(request).await?.report().await })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.status, JobStatus::Completed);
    assert_eq!(report.records_written, 2_500);
    assert_eq!(report.record_errors, 1);
    let error = &report.error_samples[0];
    assert_eq!(error.position.line, Some(1_204), "{error}");
    assert_eq!(error.position.byte, Some(broken_byte), "{error}");
    let mut files: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let copied: Vec<serde_json::Value> = files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(copied.len(), values.len());
    assert!(copied == values, "every value unchanged and in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_shut_down_mid_group_hands_the_rest_of_its_batches_on() {
    let h = Harness::start().await;
    let client = h.server.client().await.unwrap();
    let job = "hand-back";
    // Groups of 8 batches, 200 ms a write: a group takes about 1.6 s.
    let sink = CountingSink {
        delay_ms: 200,
        ..CountingSink::new(job)
    };
    let req = request(job, 800, sink)
        .batch_size(25)
        .batches_per_activity(8)
        .max_in_flight(2);
    let worker = |grace| {
        batch_orchestra::Worker::builder(client.clone(), batch_orchestra_tests::TASK_QUEUE)
            .shutdown_grace(grace)
            .pipeline::<RangeToCounting>()
            .unwrap()
            .build()
            .unwrap()
    };
    let handle = h.jobs.start::<RangeToCounting>(req).await.unwrap();
    // The first worker is shut down 0.7 s in, with half a second of grace: its activities
    // are asked to stop mid-group, finish the write in progress and return what they did.
    let mut first = worker(Duration::from_millis(500));
    let stopped = Instant::now();
    first
        .run_until(tokio::time::sleep(Duration::from_millis(700)))
        .await
        .unwrap();
    let shutdown_took = stopped.elapsed();
    drop(first);
    let mut second = worker(Duration::from_secs(30));
    let report = second.run_until(handle.report()).await.unwrap().unwrap();

    assert!(
        shutdown_took < Duration::from_secs(3),
        "the grace was kept: {shutdown_took:?}"
    );
    let events = history(&h.jobs, job).await;
    let cut_short = events
        .iter()
        .filter_map(|e| match &e.attributes {
            Some(Attributes::ActivityTaskCompletedEventAttributes(a)) => a.result.as_ref(),
            _ => None,
        })
        .flat_map(|p| &p.payloads)
        .filter(|p| {
            let v: serde_json::Value = serde_json::from_slice(&p.data).unwrap_or_default();
            v["cancelled_after"].as_u64().is_some_and(|n| n < 8)
        })
        .count();
    assert!(cut_short > 0, "an activity stopped mid-group");
    assert_eq!(report.status, JobStatus::Completed);
    assert_eq!(report.records_read, 800);
    assert_eq!(report.records_written + report.already_present, 800);
    let log = CountingSink::log(job);
    assert_eq!(
        log.ids.len(),
        800,
        "every record written once the rest was handed on"
    );
}

/// One counter of a worker's `/metrics`, for the `range-to-counting` pipeline.
fn scrape(addr: std::net::SocketAddr, metric: &str) -> u64 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    let prefix = format!("{metric}{{pipeline=\"range-to-counting\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.parse::<f64>().unwrap() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_add_up_to_the_report_when_attempts_fail_and_are_retried() {
    let h = Harness::start().await;
    let client = h.server.client().await.unwrap();
    let job = "metrics-retried";
    // Batch 2 of the group 0-3 fails every attempt: batches 0 and 1 are written by attempts
    // that fail, then again by their reruns alone (already present).
    let sink = CountingSink {
        poison_batch: Some(2),
        ..CountingSink::new(job)
    };
    let req = request(job, 800, sink)
        .batch_size(100)
        .batches_per_activity(4)
        .retry("process", quick_retries(3));
    let mut worker =
        batch_orchestra::Worker::builder(client.clone(), batch_orchestra_tests::TASK_QUEUE)
            .metrics("127.0.0.1:0".parse().unwrap())
            .pipeline::<RangeToCounting>()
            .unwrap()
            .build()
            .unwrap();
    let addr = worker.metrics_addr().expect("metrics are served");
    let report = worker
        .run_until(async { h.jobs.start::<RangeToCounting>(req).await?.report().await })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.status, JobStatus::CompletedWithFailures);
    // Batches 0 and 1 reached the sink in the failed attempts: their reruns find them.
    assert_eq!(report.records_written, 500);
    assert_eq!(report.already_present, 200);
    let m = |name| scrape(addr, name);
    assert_eq!(
        m("batch_orchestra_records_written_total"),
        report.records_written
    );
    assert_eq!(
        m("batch_orchestra_records_already_present_total"),
        report.already_present
    );
    assert_eq!(m("batch_orchestra_records_read_total"), report.records_read);
    assert_eq!(m("batch_orchestra_batches_total"), report.batches);
    // Three attempts of the group, two of batch 2 alone.
    assert_eq!(m("batch_orchestra_activity_failures_total"), 5);
    assert_eq!(m("batch_orchestra_activities_in_flight"), 0);
}
