// The attributes go on structs only.
use batch_orchestra::testing::RangeSource;
use batch_orchestra::{batch_sink, batch_source};

#[batch_source(name = "modes", reader = RangeSource)]
pub enum Mode {
    Fast,
    Slow,
}

#[batch_sink(name = "bits", writer = RangeSource)]
pub union Bits {
    a: u32,
    b: f32,
}

#[batch_source(name = "fun", reader = RangeSource)]
fn not_a_type() {}

fn main() {}
