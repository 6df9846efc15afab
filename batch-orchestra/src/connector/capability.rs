//! What a pipeline's source can do beyond the batch core, found once where its type is
//! concrete (by `pipeline!`) and carried as values, so that code generic over any pipeline
//! can ask without a bound it cannot state.

use std::future::Future;
use std::pin::Pin;

use super::{ListInputs, ShardPage, SourceConfig, StreamSource};
use crate::error::ConnectorError;

/// A source's [`ListInputs::list_inputs`], boxed: what the `list` activity calls.
pub type ListFn<S> = for<'a> fn(
    &'a S,
    Option<String>,
    usize,
) -> Pin<
    Box<dyn Future<Output = Result<ShardPage<S>, ConnectorError>> + Send + 'a>,
>;

/// The capabilities of source config `S`: whether it streams, and its listing.
pub struct Capabilities<S> {
    streaming: bool,
    list: Option<ListFn<S>>,
}

impl<S> Clone for Capabilities<S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for Capabilities<S> {}

impl<S> Capabilities<S> {
    /// What the probes found: used by `pipeline!`.
    pub fn found(streaming: bool, list: Option<ListFn<S>>) -> Self {
        Self { streaming, list }
    }
}

impl<S: SourceConfig> Capabilities<S> {
    /// A batch source that lists no inputs: the default of a pipeline not declared with
    /// `pipeline!`.
    pub const fn batch() -> Self {
        Self {
            streaming: false,
            list: None,
        }
    }

    /// Whether the source is a [`StreamSource`].
    pub fn is_stream(&self) -> bool {
        self.streaming
    }

    /// Whether the source [lists its inputs](ListInputs).
    pub fn lists_inputs(&self) -> bool {
        self.list.is_some()
    }

    /// Lists a page of the source's inputs, or refuses when it cannot list them.
    pub(crate) async fn list(
        &self,
        source: &S,
        after: Option<String>,
        limit: usize,
    ) -> Result<ShardPage<S>, ConnectorError> {
        match self.list {
            Some(list) => list(source, after, limit).await,
            None => Err(ConnectorError::config(format!(
                "source `{}` cannot list inputs for a sharded job: give it a listing with `#[batch_source(..., shards = list)]` (the `ListInputs` trait), or list the inputs in the request",
                S::NAME
            ))),
        }
    }
}

/// Finds what a concrete source config can do: `(&&SourceProbe::<S>::new()).streaming()`
/// picks the impl on `&SourceProbe<S>` when `S` has the capability and falls back to the one
/// on `SourceProbe<S>` when not (method resolution tries `&&` before `&`).
pub struct SourceProbe<S>(std::marker::PhantomData<fn() -> S>);

impl<S> SourceProbe<S> {
    /// A probe for `S`.
    pub const fn new() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<S> Default for SourceProbe<S> {
    fn default() -> Self {
        Self::new()
    }
}

/// The probe's answer for a [`StreamSource`].
pub trait Streams {
    /// Whether the source streams: yes.
    fn streaming(&self) -> bool;
}

impl<S: StreamSource> Streams for &SourceProbe<S> {
    fn streaming(&self) -> bool {
        true
    }
}

/// The probe's answer for any other source.
pub trait DoesNotStream {
    /// Whether the source streams: no.
    fn streaming(&self) -> bool;
}

impl<S> DoesNotStream for SourceProbe<S> {
    fn streaming(&self) -> bool {
        false
    }
}

/// The probe's answer for a source that [lists its inputs](ListInputs).
pub trait Lists<S> {
    /// Its listing.
    fn listing(&self) -> Option<ListFn<S>>;
}

impl<S: ListInputs> Lists<S> for &SourceProbe<S> {
    fn listing(&self) -> Option<ListFn<S>> {
        Some(list_boxed::<S>)
    }
}

/// The probe's answer for a source that lists nothing.
pub trait DoesNotList<S> {
    /// No listing.
    fn listing(&self) -> Option<ListFn<S>>;
}

impl<S> DoesNotList<S> for SourceProbe<S> {
    fn listing(&self) -> Option<ListFn<S>> {
        None
    }
}

fn list_boxed<S: ListInputs>(
    source: &S,
    after: Option<String>,
    limit: usize,
) -> Pin<Box<dyn Future<Output = Result<ShardPage<S>, ConnectorError>> + Send + '_>> {
    Box::pin(source.list_inputs(after, limit))
}
