// A sink attribute without its name, on a config a pipeline uses: the missing name is the only
// error (the config still counts as a sink, through its writer).
use batch_orchestra::connector::{Sink, WriteContext, WriteOutcome};
use batch_orchestra::testing::{RangeSource, TestRecord};
use batch_orchestra::{ConnectorError, Positioned, batch_sink, pipeline};

#[batch_sink(writer = Store)]
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct StoreConfig;

pub struct Store;

impl Sink for Store {
    type Record = TestRecord;

    async fn write(
        &self,
        _ctx: &WriteContext,
        records: Vec<Positioned<TestRecord>>,
    ) -> Result<WriteOutcome, ConnectorError> {
        Ok(WriteOutcome {
            written: records.len() as u64,
            ..Default::default()
        })
    }
}

pipeline! {
    pub Copy { source: RangeSource, sink: StoreConfig }
}

fn main() {
    let _ = Copy::request("job", RangeSource::new(10), StoreConfig);
}
