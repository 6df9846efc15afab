//! Procedural macros for `batch-orchestra`: `#[batch_source]`, `#[batch_sink]`, `pipeline!`
//! and `pipelines!`. Use them through the `batch_orchestra` crate, which re-exports them and
//! documents them with examples.
//!
//! Each macro parses its input into a small model, checks it while collecting every error
//! with its span, and only then expands. Macros never panic on user input.

mod connector;
mod names;
mod pipeline;

use proc_macro::TokenStream;

/// Turns a config struct into a batch source. See `batch_orchestra::batch_source`.
#[proc_macro_attribute]
pub fn batch_source(args: TokenStream, input: TokenStream) -> TokenStream {
    connector::expand(connector::Side::Source, args.into(), input.into()).into()
}

/// Turns a config struct into a batch sink. See `batch_orchestra::batch_sink`.
#[proc_macro_attribute]
pub fn batch_sink(args: TokenStream, input: TokenStream) -> TokenStream {
    connector::expand(connector::Side::Sink, args.into(), input.into()).into()
}

/// Declares a pipeline. See `batch_orchestra::pipeline`.
#[proc_macro]
pub fn pipeline(input: TokenStream) -> TokenStream {
    pipeline::expand(input.into()).into()
}

/// Lists pipelines for one worker, rejecting duplicate names at compile time. See
/// `batch_orchestra::pipelines`.
#[proc_macro]
pub fn pipelines(input: TokenStream) -> TokenStream {
    pipeline::expand_list(input.into()).into()
}
