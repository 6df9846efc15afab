// Transforms with state: a type that is not transform state, a transform that does not take
// the state, a state without a transform, and an async transform that is not async.
use batch_orchestra::testing::{CountingSink, RangeSource, TestRecord};
use batch_orchestra::{TransformError, pipeline};

pub struct NotState;

fn takes_state(record: TestRecord, _: &NotState) -> Result<TestRecord, TransformError> {
    Ok(record)
}

pipeline! {
    pub StateNotState {
        source: RangeSource,
        transform: takes_state,
        state: NotState,
        sink: CountingSink,
    }
}

fn one_argument(record: TestRecord) -> Result<TestRecord, TransformError> {
    Ok(record)
}

pipeline! {
    pub IgnoresState {
        source: RangeSource,
        transform: one_argument,
        state: (),
        sink: CountingSink,
    }
}

pipeline! {
    pub StateAlone {
        source: RangeSource,
        state: (),
        sink: CountingSink,
    }
}

pipeline! {
    pub NotAsync {
        source: RangeSource,
        transform: async one_argument,
        sink: CountingSink,
    }
}

fn main() {}
