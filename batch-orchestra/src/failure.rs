//! The failure and retry policy, in one place: the failure types, how a connector error
//! becomes an activity failure (retryable or not, with its attempt as data), how a workflow
//! reads the original cause back, and the retry policy activities run under.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use temporalio_common::RetryPolicy;
use temporalio_common::protos::temporal::api::failure::v1::{Failure, failure::FailureInfo};
use temporalio_sdk::activities::ActivityError;
use temporalio_sdk::{ActivityExecutionError, ActivityOptions, ApplicationFailure};

use crate::error::{ConnectorError, ErrorKind};

/// The name of the failure type for configuration errors in Temporal, used in retry policies.
pub const CONFIG_ERROR_TYPE: &str = "ConfigError";
/// The name of the failure type when a job exceeds its `max_record_errors`.
pub const RECORD_ERROR_LIMIT_TYPE: &str = "RecordErrorLimit";
/// The name of the failure type when a job has more failed batches than `max_failed_batches`.
pub const FAILED_BATCH_LIMIT_TYPE: &str = "FailedBatchLimit";
/// The name of the failure type of a deterministic batch error ([`ErrorKind::Batch`]).
pub const BATCH_ERROR_TYPE: &str = "BatchError";
/// The name of the failure type of a retryable connector error ([`ErrorKind::Transient`]).
pub const TRANSIENT_ERROR_TYPE: &str = "TransientError";
/// The name of the failure type when an activity failed for good (retries exhausted).
pub const ACTIVITY_FAILED_TYPE: &str = "ActivityFailed";
/// The name of the failure type of a request that does not validate.
pub(crate) const INVALID_REQUEST_TYPE: &str = "InvalidRequest";

/// Retry settings of one activity (Temporal's retry policy).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrySettings {
    /// Wait before the first retry.
    pub initial_interval: Duration,
    /// Factor applied to the wait after each retry.
    pub backoff_coefficient: f64,
    /// Longest wait between retries.
    pub maximum_interval: Duration,
    /// Attempts in all, including the first; 0 for unlimited.
    pub maximum_attempts: u32,
    /// Failure types never retried (configuration errors never are, whatever this says).
    pub non_retryable_error_types: Vec<String>,
}

impl Default for RetrySettings {
    /// 1 s, doubling, at most 30 s between attempts, 5 attempts in all.
    fn default() -> Self {
        Self {
            initial_interval: Duration::from_secs(1),
            backoff_coefficient: 2.0,
            maximum_interval: Duration::from_secs(30),
            maximum_attempts: 5,
            non_retryable_error_types: Vec::new(),
        }
    }
}
/// What an activity failure carries besides its message: the attempt it failed at.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct FailureDetail {
    attempt: u32,
}

/// Converts a connector error into an activity failure: configuration and batch errors are
/// non-retryable, the rest are retried by the activity's retry policy. The attempt (above 0)
/// travels in the failure's details, where the workflow reads it for its failed-batch record.
pub(crate) fn activity_error(err: ConnectorError, attempt: u32) -> ActivityError {
    let (type_name, non_retryable) = match err.kind() {
        ErrorKind::Config => (CONFIG_ERROR_TYPE, true),
        ErrorKind::Transient => (TRANSIENT_ERROR_TYPE, false),
        ErrorKind::Batch => (BATCH_ERROR_TYPE, true),
    };
    let failure = ApplicationFailure::builder(err)
        .type_name(type_name.to_owned())
        .non_retryable(non_retryable);
    let failure = if attempt > 0 {
        failure.details(FailureDetail { attempt }).build()
    } else {
        failure.build()
    };
    ActivityError::application(failure)
}

/// The attempt an activity failure carries in its details, at any depth of the chain.
fn attempt_of(failure: &Failure) -> Option<u32> {
    let mut current = Some(failure);
    while let Some(f) = current {
        if let Some(FailureInfo::ApplicationFailureInfo(info)) = &f.failure_info
            && let Some(payload) = info.details.as_ref().and_then(|d| d.payloads.first())
            && let Ok(detail) = serde_json::from_slice::<FailureDetail>(&payload.data)
        {
            return Some(detail.attempt);
        }
        current = f.cause.as_deref();
    }
    None
}

/// What runs recorded before the attempt was data put before the attempt number at the end
/// of a failure's message.
const ATTEMPT_PREFIX: &str = " (attempt ";

/// Why a job stops early.
pub(crate) struct Stop {
    pub kind: &'static str,
    pub message: String,
}

impl Stop {
    pub fn new(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// The original cause of an activity failure, unwrapped from Temporal's nesting.
#[derive(Clone)]
pub(crate) struct Cause {
    /// The failure type: configuration, batch, transient, or a timeout.
    pub kind: &'static str,
    /// The deepest message, without the attempt suffix.
    pub message: String,
    /// The attempt it failed at, when the activity said so.
    pub attempt: Option<u32>,
}

impl Cause {
    pub fn of(err: &ActivityExecutionError) -> Self {
        let Some(failure) = err.failure() else {
            return Self {
                kind: ACTIVITY_FAILED_TYPE,
                message: err.to_string(),
                attempt: None,
            };
        };
        let (kind, message) = root_cause(failure);
        // Runs recorded before the attempt was data carry it at the end of the message.
        let (message, attempt) = match attempt_of(failure) {
            Some(attempt) => (message, Some(attempt)),
            None => split_attempt(message),
        };
        Self {
            kind,
            message,
            attempt,
        }
    }

    /// A stop with `context` (what was being done) before the cause.
    pub fn stop(self, context: impl std::fmt::Display) -> Stop {
        let kind = if self.kind == CONFIG_ERROR_TYPE {
            CONFIG_ERROR_TYPE
        } else {
            ACTIVITY_FAILED_TYPE
        };
        Stop::new(kind, format!("{context}: {}", self.message))
    }
}

/// The deepest message in a failure chain, and the failure type that matters most.
pub(crate) fn root_cause(failure: &Failure) -> (&'static str, String) {
    let mut kind = ACTIVITY_FAILED_TYPE;
    let mut message = message_of(failure);
    let mut current = Some(failure);
    while let Some(f) = current {
        let text = message_of(f);
        if !text.is_empty() {
            message = text;
        }
        match &f.failure_info {
            Some(FailureInfo::ApplicationFailureInfo(info)) => {
                for known in [CONFIG_ERROR_TYPE, BATCH_ERROR_TYPE, TRANSIENT_ERROR_TYPE] {
                    if info.r#type == known && kind != CONFIG_ERROR_TYPE {
                        kind = known;
                    }
                }
            }
            Some(FailureInfo::TimeoutFailureInfo(_)) => {
                kind = "Timeout";
                message = format!(
                    "the activity timed out ({}): its worker died or stopped heartbeating",
                    f.message
                );
            }
            _ => {}
        }
        current = f.cause.as_deref();
    }
    (kind, message)
}

/// A failure's message. With payload encryption the worker moves it into the failure's
/// encoded attributes (`{"message": ...}`, decrypted by the time the workflow sees it) and
/// leaves "Encoded failure" in its place.
fn message_of(failure: &Failure) -> String {
    let encoded = failure
        .encoded_attributes
        .as_ref()
        .and_then(|p| serde_json::from_slice::<serde_json::Value>(&p.data).ok())
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned));
    encoded.unwrap_or_else(|| failure.message.clone())
}

/// Splits ` (attempt 3)` off the end of a message.
fn split_attempt(message: String) -> (String, Option<u32>) {
    if let Some(at) = message.rfind(ATTEMPT_PREFIX)
        && let Some(number) = message[at + ATTEMPT_PREFIX.len()..].strip_suffix(')')
        && let Ok(attempt) = number.parse()
    {
        return (message[..at].to_owned(), Some(attempt));
    }
    (message, None)
}

/// The request a run started with, checked: a missing or invalid one ends the workflow with a
/// non-retryable failure naming the field at fault.
pub(crate) fn checked_request<R>(
    request: Option<R>,
    validate: impl FnOnce(&R) -> Result<(), crate::error::JobError>,
) -> Result<R, temporalio_sdk::WorkflowTermination> {
    use temporalio_sdk::{ApplicationFailure, WorkflowTermination};
    let Some(req) = request else {
        return Err(WorkflowTermination::failed_application(
            ApplicationFailure::non_retryable("the workflow was started without a job request"),
        ));
    };
    if let Err(e) = validate(&req) {
        return Err(WorkflowTermination::failed_application(
            ApplicationFailure::builder(e.to_string())
                .type_name(INVALID_REQUEST_TYPE.to_owned())
                .non_retryable(true)
                .build(),
        ));
    }
    Ok(req)
}

/// The options of an activity: its timeouts and its retry policy, under which configuration
/// errors and invalid requests are never retried.
pub(crate) fn activity_options(
    settings: Option<&RetrySettings>,
    timeout: Duration,
    heartbeat: Duration,
    activity_id: Option<String>,
) -> ActivityOptions {
    let settings = settings.cloned().unwrap_or_default();
    let mut non_retryable = settings.non_retryable_error_types;
    non_retryable.push(CONFIG_ERROR_TYPE.to_owned());
    non_retryable.push(INVALID_REQUEST_TYPE.to_owned());
    let policy = RetryPolicy::builder()
        .initial_interval(settings.initial_interval)
        .backoff_coefficient(settings.backoff_coefficient)
        .maximum_interval(settings.maximum_interval)
        .maximum_attempts(settings.maximum_attempts)
        .non_retryable_error_types(non_retryable)
        .build();
    ActivityOptions::with_start_to_close_timeout(timeout)
        .maybe_activity_id(activity_id)
        .heartbeat_timeout(heartbeat)
        .retry_policy(policy)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use temporalio_common::protos::temporal::api::common::v1::{Payload, Payloads};
    use temporalio_common::protos::temporal::api::failure::v1::ApplicationFailureInfo;

    fn failure(message: &str, details: Option<&str>) -> Failure {
        Failure {
            message: message.into(),
            failure_info: Some(FailureInfo::ApplicationFailureInfo(
                ApplicationFailureInfo {
                    r#type: TRANSIENT_ERROR_TYPE.into(),
                    details: details.map(|d| Payloads {
                        payloads: vec![Payload {
                            data: d.as_bytes().to_vec(),
                            ..Default::default()
                        }],
                    }),
                    ..Default::default()
                },
            )),
            ..Default::default()
        }
    }

    #[test]
    fn the_attempt_is_read_from_the_failure_details() {
        let f = failure("sink down", Some(r#"{"attempt":3}"#));
        assert_eq!(attempt_of(&f), Some(3));
        let wrapped = Failure {
            message: "activity failed".into(),
            cause: Some(Box::new(f)),
            ..Default::default()
        };
        assert_eq!(attempt_of(&wrapped), Some(3), "at any depth");
        assert_eq!(
            root_cause(&wrapped),
            (TRANSIENT_ERROR_TYPE, "sink down".into())
        );
    }

    #[test]
    fn runs_recorded_with_the_attempt_in_the_message_still_read_it() {
        let f = failure("sink down (attempt 3)", None);
        assert_eq!(attempt_of(&f), None);
        assert_eq!(
            split_attempt(root_cause(&f).1),
            ("sink down".into(), Some(3))
        );
        assert_eq!(
            split_attempt("sink down".into()),
            ("sink down".into(), None)
        );
    }
}
