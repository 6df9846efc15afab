//! Items the macros expand to. Each check is a trait with `#[diagnostic::on_unimplemented]`
//! or a `const` assertion, so a mistake is reported at the user's code with a message that
//! says what to write.

use serde::{Serialize, de::DeserializeOwned};

use crate::connector::{SinkConfig, SourceConfig};
use crate::pipeline::{TransformOutput, TransformState};

/// Implemented by every serde-serializable type: connector configs travel in job requests.
#[diagnostic::on_unimplemented(
    message = "the connector config `{Self}` must be serializable with serde",
    label = "not serializable",
    note = "add `#[derive(serde::Serialize, serde::Deserialize)]` to the struct"
)]
pub trait SerializableConfig {}

impl<T: Serialize + DeserializeOwned> SerializableConfig for T {}

/// Compiles only when `T` is serializable.
pub const fn assert_serializable_config<T: SerializableConfig>() {}

/// Compiles only when `T` is a source config.
pub const fn assert_source<T: SourceConfig>() {}

/// Compiles only when `T` is a sink config.
pub const fn assert_sink<T: SinkConfig>() {}

/// A transform from `In` records to `Out` records.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a transform from `{In}` to `{Out}`",
    label = "expected a `fn({In}) -> Result<{Out}, TransformError>`",
    note = "a transform takes the source's record and returns `Result<{Out}, batch_orchestra::TransformError>` (or `Result<Option<{Out}>, _>` to filter, `Result<Vec<{Out}>, _>` for many)"
)]
pub trait Transform<In, Out> {
    /// What the transform returns.
    type Output: TransformOutput<Out>;
    /// Applies the transform.
    fn apply(&self, record: In) -> Self::Output;
}

impl<In, Out, F, R> Transform<In, Out> for F
where
    F: Fn(In) -> R,
    R: TransformOutput<Out>,
{
    type Output = R;
    fn apply(&self, record: In) -> R {
        self(record)
    }
}

/// Checks `f` is a transform from `In` to `Out` and returns it as a function.
pub fn as_transform<In, Out, F: Transform<In, Out>>(f: F) -> impl Fn(In) -> F::Output {
    move |record| f.apply(record)
}

/// A transform from `In` records to `Out` records that takes the pipeline's state `S`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a transform from `{In}` with state `{S}` to `{Out}`",
    label = "expected a `fn({In}, &{S}) -> Result<{Out}, TransformError>`",
    note = "with `state: {S}` in the pipeline, the transform takes the state as its second argument: `fn(record: {In}, state: &{S})`"
)]
pub trait TransformWith<In, Out, S> {
    /// What the transform returns.
    type Output: TransformOutput<Out>;
    /// Applies the transform.
    fn apply(&self, record: In, state: &S) -> Self::Output;
}

impl<In, Out, S, F, R> TransformWith<In, Out, S> for F
where
    F: Fn(In, &S) -> R,
    R: TransformOutput<Out>,
{
    type Output = R;
    fn apply(&self, record: In, state: &S) -> R {
        self(record, state)
    }
}

/// Checks `f` is a transform from `In` with state `S` to `Out` and returns it.
pub fn as_transform_with<In, Out, S, F: TransformWith<In, Out, S>>(
    f: F,
) -> impl Fn(In, &S) -> F::Output {
    move |record, state| f.apply(record, state)
}

/// An async transform from `In` records to `Out` records.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an async transform from `{In}` to `{Out}`",
    label = "expected an `async fn({In}) -> Result<{Out}, TransformError>`",
    note = "`transform: async f` takes an async function of the source's record"
)]
pub trait AsyncTransform<In, Out> {}

impl<In, Out, F, R> AsyncTransform<In, Out> for F
where
    F: AsyncFn(In) -> R,
    R: TransformOutput<Out>,
{
}

/// Compiles only when `f` is an async transform from `In` to `Out`; the call itself is made
/// on the function, so the compiler sees its concrete future (and that it is `Send`).
pub fn check_async_transform<In, Out, F: AsyncTransform<In, Out>>(_: &F) {}

/// An async transform from `In` records to `Out` records that takes the pipeline's state `S`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an async transform from `{In}` with state `{S}` to `{Out}`",
    label = "expected an `async fn({In}, &{S}) -> Result<{Out}, TransformError>`",
    note = "with `state: {S}` in the pipeline, the transform takes the state as its second argument: `async fn(record: {In}, state: &{S})`"
)]
pub trait AsyncTransformWith<In, Out, S> {}

impl<In, Out, S, F, R> AsyncTransformWith<In, Out, S> for F
where
    F: AsyncFn(In, &S) -> R,
    R: TransformOutput<Out>,
{
}

/// Compiles only when `f` is an async transform from `In` with state `S` to `Out`.
pub fn check_async_transform_with<In, Out, S, F: AsyncTransformWith<In, Out, S>>(_: &F) {}

/// What a transform written `transform: f` returns, seen before it is used: a future means
/// `f` is an `async fn`, which `pipeline!` calls only when told (`transform: async f`).
pub struct TransformProbe<F, In>(std::marker::PhantomData<(F, In)>);

impl<F, In> TransformProbe<F, In> {
    /// The probe of `f`.
    pub fn of(_: &F) -> Self {
        Self(std::marker::PhantomData)
    }
}

/// Found when the transform returns a future: refused by [`written_sync`].
pub struct ReturnsFuture;
/// Found otherwise.
pub struct ReturnsValue;

/// The probe's answer for a function that returns a future (chosen first, by autoref).
pub trait ProbeAsync {
    /// What the transform returns.
    fn returns(&self) -> ReturnsFuture;
}

impl<F: Fn(In) -> R, In, R: std::future::Future> ProbeAsync for &TransformProbe<F, In> {
    fn returns(&self) -> ReturnsFuture {
        ReturnsFuture
    }
}

/// [`TransformProbe`] for a transform that takes the pipeline's state `S`.
pub struct TransformProbeWith<F, In, S>(std::marker::PhantomData<(F, In, S)>);

impl<F, In, S> TransformProbeWith<F, In, S> {
    /// The probe of `f`.
    pub fn of(_: &F) -> Self {
        Self(std::marker::PhantomData)
    }
}

// At one lifetime: an `async fn(record, &State)` returns a future borrowing the state.
impl<F, In, S: 'static, R> ProbeAsync for &TransformProbeWith<F, In, S>
where
    F: Fn(In, &'static S) -> R,
    R: std::future::Future,
{
    fn returns(&self) -> ReturnsFuture {
        ReturnsFuture
    }
}

impl<F, In, S> ProbeSync for TransformProbeWith<F, In, S> {
    fn returns(&self) -> ReturnsValue {
        ReturnsValue
    }
}

/// The probe's answer for any other function.
pub trait ProbeSync {
    /// What the transform returns.
    fn returns(&self) -> ReturnsValue;
}

impl<F, In> ProbeSync for TransformProbe<F, In> {
    fn returns(&self) -> ReturnsValue {
        ReturnsValue
    }
}

/// A transform written `transform: f` that returns a value.
#[diagnostic::on_unimplemented(
    message = "this transform is an `async fn`: write `transform: async` before its name in `pipeline!`",
    label = "returns a future",
    note = "`transform: f` calls `f` and uses what it returns; `transform: async f` awaits it"
)]
pub trait WrittenSync {}

impl WrittenSync for ReturnsValue {}

/// Compiles only when the transform does not return a future.
pub fn written_sync<T: WrittenSync>(_: T) {}

/// The future a source config's build method returns.
#[diagnostic::on_unimplemented(
    message = "`{C}` has no `build_source` method of the expected shape",
    label = "expected an `async fn(&self) -> Result<{B}, ConnectorError>`",
    note = "add `async fn build_source(&self) -> Result<{B}, batch_orchestra::ConnectorError>` to `impl {C}`, or name your own method with `build = my_method` in `#[batch_source]`"
)]
pub trait BuildSource<B, C>:
    std::future::Future<Output = Result<B, crate::ConnectorError>> + Send
{
}

impl<B, C, F> BuildSource<B, C> for F where
    F: std::future::Future<Output = Result<B, crate::ConnectorError>> + Send
{
}

/// Checks what a source config's build method returns.
pub fn build_source<B, C, F: BuildSource<B, C>>(f: F) -> F {
    f
}

/// The future a sink config's build method returns.
#[diagnostic::on_unimplemented(
    message = "`{C}` has no `build_sink` method of the expected shape",
    label = "expected an `async fn(&self) -> Result<{B}, ConnectorError>`",
    note = "add `async fn build_sink(&self) -> Result<{B}, batch_orchestra::ConnectorError>` to `impl {C}`, or name your own method with `build = my_method` in `#[batch_sink]`"
)]
pub trait BuildSink<B, C>:
    std::future::Future<Output = Result<B, crate::ConnectorError>> + Send
{
}

impl<B, C, F> BuildSink<B, C> for F where
    F: std::future::Future<Output = Result<B, crate::ConnectorError>> + Send
{
}

/// Checks what a sink config's build method returns.
pub fn build_sink<B, C, F: BuildSink<B, C>>(f: F) -> F {
    f
}

/// Stands for a build method the config does not have, so the call above reports it.
pub struct NoBuildMethod;

/// `build_source` and `build_sink` for configs that lack them (an inherent method, when
/// there is one, is found first).
pub trait MissingBuildMethods {
    /// Reported by [`build_source()`].
    fn build_source(&self) -> NoBuildMethod {
        NoBuildMethod
    }
    /// Reported by [`build_sink()`].
    fn build_sink(&self) -> NoBuildMethod {
        NoBuildMethod
    }
}

impl<T> MissingBuildMethods for T {}

/// Compiles only when `S` is transform state.
pub const fn assert_state<S: TransformState>() {}

/// Implemented when a pipeline without a transform has the same record type at both ends.
#[diagnostic::on_unimplemented(
    message = "pipeline `{P}` has no transform, but its source's records are `{Self}` and its sink's records are `{R}`",
    label = "the records differ",
    note = "add `transform: my_transform,` to the pipeline, with `fn my_transform(record: {Self}) -> Result<{R}, batch_orchestra::TransformError>`"
)]
pub trait SameRecord<R, P> {
    /// The record, unchanged.
    fn same_record(self) -> R;
}

impl<T, P> SameRecord<T, P> for T {
    fn same_record(self) -> T {
        self
    }
}

/// Byte equality of two names, usable in constants.
pub const fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}
