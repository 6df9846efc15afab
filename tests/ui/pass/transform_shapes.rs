//! Every transform shape `pipeline!` takes compiles: none, one record, a filter, a fan-out,
//! async, with state, and async with state; and the generated items have the documented types.
use batch_orchestra::batch::RequestOf;
use batch_orchestra::pipeline::TransformState;
use batch_orchestra::testing::{CountingSink, RangeSource, TestRecord};
use batch_orchestra::{ConnectorError, JobClient, TransformError, pipeline, pipelines};

fn one(record: TestRecord) -> Result<TestRecord, TransformError> {
    Ok(record)
}

fn filter(record: TestRecord) -> Result<Option<TestRecord>, TransformError> {
    Ok(record.id.is_multiple_of(2).then_some(record))
}

fn fan_out(record: TestRecord) -> Result<Vec<TestRecord>, TransformError> {
    Ok(vec![record.clone(), record])
}

async fn looked_up(record: TestRecord) -> Result<TestRecord, TransformError> {
    Ok(record)
}

pub struct Offsets(u64);

impl TransformState for Offsets {
    async fn build() -> Result<Self, ConnectorError> {
        Ok(Offsets(1_000))
    }
}

fn shifted(record: TestRecord, offsets: &Offsets) -> Result<TestRecord, TransformError> {
    Ok(TestRecord {
        id: record.id + offsets.0,
        ..record
    })
}

async fn shifted_later(
    record: TestRecord,
    offsets: &Offsets,
) -> Result<TestRecord, TransformError> {
    Ok(TestRecord {
        id: record.id + offsets.0,
        ..record
    })
}

pipeline! { pub(crate) Plain { source: RangeSource, sink: CountingSink } }
pipeline! { pub(crate) One { source: RangeSource, transform: one, sink: CountingSink } }
pipeline! { pub(crate) Filter { source: RangeSource, transform: filter, sink: CountingSink } }
pipeline! { pub(crate) FanOut { source: RangeSource, transform: fan_out, sink: CountingSink } }
pipeline! { pub(crate) Async { source: RangeSource, transform: async looked_up, sink: CountingSink } }
pipeline! { pub(crate) WithState { source: RangeSource, transform: shifted, state: Offsets, sink: CountingSink } }
pipeline! {
    pub(crate) AsyncWithState {
        source: RangeSource,
        transform: async shifted_later,
        state: Offsets,
        sink: CountingSink,
        workflow: "async-with-state",
    }
}

#[allow(dead_code)]
async fn generated_items(jobs: &JobClient) -> Result<(), batch_orchestra::JobError> {
    let request: RequestOf<One> =
        One::request("job", RangeSource::new(10), CountingSink::new("job"));
    let handle: batch_orchestra::JobHandle<One> = One::start(jobs, request).await?;
    let _same: batch_orchestra::JobHandle<One> = One::job(jobs, "job");
    let _ = handle;
    Ok(())
}

pub fn check() {
    let _ = pipelines![Plain, One, Filter, FanOut, Async, WithState, AsyncWithState];
    assert_eq!(AsyncWithState::WORKFLOW, "async-with-state");
    assert_eq!(FanOut::WORKFLOW, "fan-out");
}
