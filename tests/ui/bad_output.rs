// A transform whose return type no sink record can come from.
use batch_orchestra::testing::{CountingSink, RangeSource, TestRecord};
use batch_orchestra::{TransformError, pipeline};

fn to_id(record: TestRecord) -> Result<u64, TransformError> {
    Ok(record.id)
}

pipeline! {
    pub WrongOutput {
        source: RangeSource,
        transform: to_id,
        sink: CountingSink,
    }
}

fn main() {}
