// A type used as a source without `#[batch_source]`.
use batch_orchestra::pipeline;
use batch_orchestra::testing::CountingSink;

#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct Plain;

pipeline! {
    pub PlainToCounting {
        source: Plain,
        sink: CountingSink,
    }
}

fn main() {}
