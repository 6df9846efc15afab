// A source whose records differ from the sink's, with no transform.
use batch_orchestra::testing::RangeSource;
use batch_orchestra::{ConnectorError, Positioned, Sink, batch_sink, pipeline};
use batch_orchestra::connector::{WriteContext, WriteOutcome};

#[batch_sink(name = "strings", writer = Self)]
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct Strings;

impl Strings {
    async fn build_sink(&self) -> Result<Self, ConnectorError> {
        Ok(self.clone())
    }
}

impl Sink for Strings {
    type Record = String;
    async fn write(&self, _ctx: &WriteContext, records: Vec<Positioned<String>>) -> Result<WriteOutcome, ConnectorError> {
        Ok(WriteOutcome { written: records.len() as u64, ..WriteOutcome::default() })
    }
}

pipeline! {
    pub RangeToStrings {
        source: RangeSource,
        sink: Strings,
    }
}

fn main() {}
