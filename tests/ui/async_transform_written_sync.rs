// An `async fn` written as `transform: f`: the error says to write `transform: async f`.
use batch_orchestra::testing::{CountingSink, RangeSource, TestRecord};
use batch_orchestra::{TransformError, pipeline};

async fn enrich(record: TestRecord) -> Result<TestRecord, TransformError> {
    Ok(record)
}

pipeline! {
    pub Enriching { source: RangeSource, transform: enrich, sink: CountingSink }
}

fn main() {}

pub struct Offsets;

impl batch_orchestra::pipeline::TransformState for Offsets {
    async fn build() -> Result<Self, batch_orchestra::ConnectorError> {
        Ok(Offsets)
    }
}

async fn shifted(record: TestRecord, _: &Offsets) -> Result<TestRecord, TransformError> {
    Ok(record)
}

pipeline! {
    pub Shifting { source: RangeSource, transform: shifted, state: Offsets, sink: CountingSink }
}
