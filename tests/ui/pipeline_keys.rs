// `pipeline!` without a source or a sink, with a repeated key and an unknown key.
use batch_orchestra::pipeline;
use batch_orchestra::testing::{CountingSink, RangeSource};

pipeline! {
    pub NoSource {
        sink: CountingSink,
    }
}

pipeline! {
    pub NoSink {
        source: RangeSource,
    }
}

pipeline! {
    pub Confused {
        source: RangeSource,
        source: RangeSource,
        sink: CountingSink,
        retries: 3,
    }
}

fn main() {}
