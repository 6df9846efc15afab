// Read logic with a wrong signature: a build method that is not async, a `read` that takes
// the wrong arguments.
use batch_orchestra::{ConnectorError, Source, batch_source};
use batch_orchestra::connector::{BatchRange, Plan, ReadBatch};

#[batch_source(name = "lines", reader = LineReader)]
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct Lines;

impl Lines {
    fn build_source(&self) -> LineReader {
        LineReader
    }
}

pub struct LineReader;

impl Source for LineReader {
    type Record = String;
    type Offset = u64;

    async fn plan(&self, _from: Option<&u64>, _batch_size: u64, _max: usize) -> Result<Plan<u64>, ConnectorError> {
        Ok(Plan { batches: vec![], end_of_source: true })
    }

    async fn read(&self, offset: u64) -> Result<ReadBatch<String>, ConnectorError> {
        let _ = offset;
        Ok(ReadBatch::default())
    }
}

fn main() {
    let _ = BatchRange::<u64> { index: 0, start: 0, end: 0, first_record: 0, records: 0 };
}
