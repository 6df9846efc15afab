//! Items the macros expand to. Each check is a trait with `#[diagnostic::on_unimplemented]`
//! or a `const` assertion, so a mistake is reported at the user's code with a message that
//! says what to write.

use serde::{Serialize, de::DeserializeOwned};

use crate::connector::{SinkConfig, SourceConfig};
use crate::error::TransformError;

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
    note = "a transform takes the source's record and returns `Result<{Out}, batch_orchestra::TransformError>`"
)]
pub trait Transform<In, Out> {
    /// Applies the transform.
    fn apply(&self, record: In) -> Result<Out, TransformError>;
}

impl<In, Out, F> Transform<In, Out> for F
where
    F: Fn(In) -> Result<Out, TransformError>,
{
    fn apply(&self, record: In) -> Result<Out, TransformError> {
        self(record)
    }
}

/// Checks `f` is a transform from `In` to `Out` and returns it as a function.
pub fn as_transform<In, Out, F: Transform<In, Out>>(
    f: F,
) -> impl Fn(In) -> Result<Out, TransformError> {
    move |record| f.apply(record)
}

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
