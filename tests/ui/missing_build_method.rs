// A sink config without `build_sink`: the error names the method to write and `build = ...`.
use batch_orchestra::connector::{Sink, WriteContext, WriteOutcome};
use batch_orchestra::testing::TestRecord;
use batch_orchestra::{ConnectorError, Positioned, batch_sink};

#[batch_sink(name = "store", writer = Store)]
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

fn main() {}
