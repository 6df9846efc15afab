// A missing `name`, unknown and repeated arguments, values of the wrong kind, a sharded stream:
// all reported.
use batch_orchestra::testing::RangeSource;
use batch_orchestra::{batch_sink, batch_source};

#[batch_source(reader = RangeSource)]
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct NoName;

#[batch_source(name = "a", name = "b", reader = RangeSource, color = "red")]
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct Repeated;

#[batch_source(name = "live", reader = RangeSource, streaming = true, shards = list, streaming)]
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct StreamingTwice;

#[batch_sink(name = 5, writer = "Text", build)]
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct WrongKinds;

fn main() {}
