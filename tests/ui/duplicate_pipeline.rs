// The same pipeline listed twice: the duplicate is named, and nothing else is reported.
use batch_orchestra::testing::RangeToCounting;
use batch_orchestra::{PipelineList, pipelines};

fn main() {
    let _list: PipelineList = pipelines![RangeToCounting, RangeToCounting];
}
