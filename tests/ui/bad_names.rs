// Names that are not lowercase letters, digits and dashes.
use batch_orchestra::testing::{CountingSink, RangeSource};
use batch_orchestra::{ConnectorError, batch_source, pipeline};

#[batch_source(name = "My_Source", reader = RangeSource)]
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct Named;

impl Named {
    async fn build_source(&self) -> Result<RangeSource, ConnectorError> {
        Ok(RangeSource::new(1))
    }
}

pipeline! {
    pub Spaced {
        source: RangeSource,
        sink: CountingSink,
        workflow: "csv to mongo",
    }
}

#[batch_source(name = "", reader = RangeSource)]
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct Empty;

fn main() {}
