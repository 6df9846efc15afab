//! Pipelines declared with the macros, end to end on a real dev server.

use std::collections::BTreeSet;

use batch_orchestra::testing::{
    CountingSink, EvenOnly, RangeSource, RangeToCounting, TemporalDevServer,
};
use batch_orchestra::{Worker, pipelines};
use batch_orchestra_tests::{Harness, TASK_QUEUE, history};
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pipelines_run_side_by_side_under_their_generated_names() {
    let h = Harness::with(pipelines![RangeToCounting, EvenOnly]).await;
    let (jobs, mut worker) = (h.jobs, h.worker);
    let (all, even) = ("side-all", "side-even");
    let (all_report, even_report, all_history) = worker
        .run_until(async {
            let a = RangeToCounting::start(
                &jobs,
                RangeToCounting::request(all, RangeSource::new(1_000), CountingSink::new(all))
                    .batch_size(100),
            )
            .await
            .unwrap();
            let b = EvenOnly::start(
                &jobs,
                EvenOnly::request(even, RangeSource::new(1_000), CountingSink::new(even))
                    .batch_size(100),
            )
            .await
            .unwrap();
            let (ra, rb) = futures::join!(a.report(), b.report());
            (ra.unwrap(), rb.unwrap(), history(&jobs, all).await)
        })
        .await
        .unwrap();

    assert_eq!(all_report.records_written, 1_000);
    assert_eq!(all_report.pipeline, "range-to-counting");
    assert_eq!(even_report.records_read, 1_000);
    assert_eq!(even_report.records_written, 500);
    assert_eq!(even_report.record_errors, 500);
    assert_eq!(even_report.error_samples[0].message, "id 1 is odd");
    assert_eq!(even_report.pipeline, "even-only");
    assert!(CountingSink::log(even).ids.iter().all(|id| id % 2 == 0));
    assert_eq!(CountingSink::log(all).ids.len(), 1_000);

    // The names in history are the generated constants.
    let mut workflow_types = BTreeSet::new();
    let mut activity_types = BTreeSet::new();
    for event in &all_history {
        match &event.attributes {
            Some(Attributes::WorkflowExecutionStartedEventAttributes(a)) => {
                workflow_types.insert(a.workflow_type.as_ref().unwrap().name.clone());
            }
            Some(Attributes::ActivityTaskScheduledEventAttributes(a)) => {
                activity_types.insert(a.activity_type.as_ref().unwrap().name.clone());
            }
            _ => {}
        }
    }
    assert_eq!(
        workflow_types,
        BTreeSet::from([RangeToCounting::WORKFLOW.to_owned()])
    );
    assert_eq!(RangeToCounting::WORKFLOW, "range-to-counting");
    assert_eq!(
        activity_types,
        BTreeSet::from([
            RangeToCounting::PLAN_ACTIVITY.to_owned(),
            RangeToCounting::PROCESS_ACTIVITY.to_owned()
        ])
    );
    assert_eq!(
        RangeToCounting::PROCESS_ACTIVITY,
        "range-to-counting.process"
    );
    assert_eq!(RangeSource::SOURCE_NAME, "range");
    assert_eq!(CountingSink::SINK_NAME, "counting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_a_pipeline_twice_is_refused() {
    let server = TemporalDevServer::start().unwrap();
    let client = server.client().await.unwrap();
    let err = Worker::builder(client, TASK_QUEUE)
        .pipeline::<RangeToCounting>()
        .unwrap()
        .pipeline::<RangeToCounting>()
        .err()
        .expect("a second registration of the same pipeline");
    assert_eq!(
        err.to_string(),
        "pipeline `RangeToCounting` is registered twice on this worker: remove the duplicate `.pipeline::<RangeToCounting>()` or `pipelines![..]` entry"
    );
}

/// Every transform shape compiles (built with this test, not by trybuild, which would build
/// every dependency again to run a passing case).
#[path = "ui/pass/transform_shapes.rs"]
mod transform_shapes;

#[test]
fn every_transform_shape_compiles() {
    transform_shapes::check();
}

#[test]
fn compile_errors_tell_the_user_what_to_write() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/*.rs");
}

/// `pipeline!` finds what each source can do from its type: a stream, a listing of inputs,
/// or neither (the plain batch source).
#[test]
fn pipeline_finds_the_capabilities_of_its_source() {
    use batch_orchestra::Pipeline;
    use batch_orchestra::connectors::csv::CsvFile;
    use batch_orchestra::testing::TicksToCounting;

    batch_orchestra::pipeline! {
        /// A listing source.
        pub CsvToCounting { source: CsvFile, transform: row_id, sink: CountingSink }
    }
    fn row_id(
        row: batch_orchestra::connectors::csv::CsvRow,
    ) -> Result<batch_orchestra::testing::TestRecord, batch_orchestra::TransformError> {
        Ok(batch_orchestra::testing::TestRecord {
            id: 0,
            payload: row.values().collect::<Vec<_>>().join(","),
        })
    }

    let ticks = TicksToCounting::capabilities();
    assert!(
        ticks.is_stream() && !ticks.lists_inputs(),
        "a stream lists nothing"
    );
    let range = RangeToCounting::capabilities();
    assert!(
        !range.is_stream() && !range.lists_inputs(),
        "a plain batch source"
    );
    let csv = CsvToCounting::capabilities();
    assert!(
        !csv.is_stream() && csv.lists_inputs(),
        "a batch source that lists files"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_runs_once() {
    let server = TemporalDevServer::start().unwrap();
    let client = server.client().await.unwrap();
    let mut worker = Worker::builder(client, TASK_QUEUE)
        .pipeline::<RangeToCounting>()
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(worker.run_until(async { 1 }).await.unwrap(), 1);
    let again = worker
        .run_until(async { 2 })
        .await
        .expect_err("a second run");
    assert!(
        again.to_string().contains("has already run and shut down"),
        "{again}"
    );
}
