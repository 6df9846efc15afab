// A transform whose signature does not match the source and sink records.
use batch_orchestra::testing::{CountingSink, RangeSource, TestRecord};
use batch_orchestra::{TransformError, pipeline};

fn from_text(line: String) -> Result<TestRecord, TransformError> {
    Ok(TestRecord { id: line.len() as u64, payload: line })
}

pipeline! {
    pub Mismatched {
        source: RangeSource,
        transform: from_text,
        sink: CountingSink,
    }
}

fn main() {}
