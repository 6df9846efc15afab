// A config struct that serde cannot serialize.
use batch_orchestra::testing::RangeSource;
use batch_orchestra::{ConnectorError, batch_source};

#[batch_source(name = "opaque", reader = RangeSource)]
#[derive(Clone)]
pub struct Opaque {
    pub path: String,
}

impl Opaque {
    async fn build_source(&self) -> Result<RangeSource, ConnectorError> {
        Ok(RangeSource::new(1))
    }
}

fn main() {}
