// Two pipelines with the same workflow name registered on one worker.
use batch_orchestra::testing::{CountingSink, RangeSource};
use batch_orchestra::{PipelineList, pipeline, pipelines};

pipeline! {
    pub First {
        source: RangeSource,
        sink: CountingSink,
        workflow: "copy",
    }
}

pipeline! {
    pub Second {
        source: RangeSource,
        sink: CountingSink,
        workflow: "copy",
    }
}

fn main() {
    let _list: PipelineList = pipelines![First, Second];
}
