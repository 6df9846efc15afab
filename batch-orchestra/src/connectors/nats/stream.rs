//! The streaming source: a durable pull consumer of a JetStream stream, one JSON record per
//! message, positioned by stream sequence.
//!
//! Messages are acknowledged one by one after the sink wrote them, so the consumer must use
//! explicit acks. A worker that dies before acknowledging leaves its messages to the server,
//! which delivers them again after the consumer's `ack_wait`; the sink's ids, derived from
//! the stream sequence, absorb the second delivery. A message that is not JSON is a record
//! error naming its sequence, and is acknowledged: it is not delivered forever.

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

use async_nats::jetstream::{
    self, AckKind,
    consumer::{AckPolicy, PullConsumer},
    context::{ConsumerInfoErrorKind, GetStreamErrorKind},
    message::Acker,
};

use crate::connector::{Receipt, Received, StreamReader};
use crate::error::{ConnectorError, RecordError};
use crate::record::{Position, Positioned};

/// A durable pull consumer of a NATS JetStream stream, as a streaming source of JSON records.
///
/// The stream and the consumer must exist (an operator's choice: subjects, retention, the
/// consumer's filter and `ack_wait`); a job refuses a missing one as a configuration error,
/// and a consumer that does not ack explicitly too.
///
/// ```
/// use batch_orchestra::connectors::nats::NatsStream;
///
/// let source = NatsStream::new("ORDERS", "orders-to-mongo").url_env("ORDERS_NATS_URL");
/// assert_eq!(source.consumer, "orders-to-mongo");
/// ```
#[crate::batch_source(name = "nats-stream", reader = NatsStreamReader, streaming)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatsStream {
    /// The environment variable holding the server URL (`nats://host:4222`), read by the
    /// worker.
    pub url_env: String,
    /// The JetStream stream.
    pub stream: String,
    /// The durable pull consumer on it (with explicit acks).
    pub consumer: String,
}

impl NatsStream {
    /// Reads `consumer` of `stream`, with the server URL from `NATS_URL`.
    pub fn new(stream: impl Into<String>, consumer: impl Into<String>) -> Self {
        Self {
            url_env: "NATS_URL".into(),
            stream: stream.into(),
            consumer: consumer.into(),
        }
    }

    /// Reads the server URL from another environment variable.
    pub fn url_env(mut self, name: impl Into<String>) -> Self {
        self.url_env = name.into();
        self
    }

    /// Opens the consumer. The consumer keeps its own position on the server (what was
    /// acknowledged), so the checkpoint `after` is not needed to resume.
    async fn open_stream(&self, after: Option<&u64>) -> Result<NatsStreamReader, ConnectorError> {
        let _ = after;
        let (url, client) = super::connect(&self.url_env).await?;
        let js = jetstream::new(client);
        let stream = js
            .get_stream(&self.stream)
            .await
            .map_err(|e| match e.kind() {
                GetStreamErrorKind::JetStream(inner)
                    if inner.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    ConnectorError::config(format!(
                        "no JetStream stream `{}` at {url}: create it, or fix the name",
                        self.stream
                    ))
                }
                GetStreamErrorKind::EmptyName | GetStreamErrorKind::InvalidStreamName => {
                    ConnectorError::config(format!(
                        "`{}` is not a valid stream name: {e}",
                        self.stream
                    ))
                }
                _ => ConnectorError::transient(format!(
                    "cannot reach stream `{}` at {url}: {e}",
                    self.stream
                )),
            })?;
        let info = stream
            .consumer_info(&self.consumer)
            .await
            .map_err(|e| match e.kind() {
                ConsumerInfoErrorKind::NotFound => ConnectorError::config(format!(
                    "stream `{}` at {url} has no consumer `{}`: create a durable pull consumer with explicit acks, or fix the name",
                    self.stream, self.consumer
                )),
                ConsumerInfoErrorKind::JetStream(inner)
                    if inner.error_code() == jetstream::ErrorCode::CONSUMER_NOT_FOUND =>
                {
                    ConnectorError::config(format!(
                        "stream `{}` at {url} has no consumer `{}`: create a durable pull consumer with explicit acks, or fix the name",
                        self.stream, self.consumer
                    ))
                }
                ConsumerInfoErrorKind::InvalidName => ConnectorError::config(format!(
                    "`{}` is not a valid consumer name: {e}",
                    self.consumer
                )),
                _ => ConnectorError::transient(format!(
                    "cannot reach consumer `{}` of stream `{}` at {url}: {e}",
                    self.consumer, self.stream
                )),
            })?;
        if info.config.deliver_subject.is_some() {
            return Err(ConnectorError::config(format!(
                "consumer `{}` of stream `{}` is a push consumer: the stream source needs a pull consumer",
                self.consumer, self.stream
            )));
        }
        if info.config.ack_policy != AckPolicy::Explicit {
            return Err(ConnectorError::config(format!(
                "consumer `{}` of stream `{}` acks `{:?}`: the stream source acknowledges each message once written, which needs `explicit` acks",
                self.consumer, self.stream, info.config.ack_policy
            )));
        }
        let consumer: PullConsumer = stream.get_consumer(&self.consumer).await.map_err(|e| {
            ConnectorError::transient(format!(
                "cannot open consumer `{}` of stream `{}` at {url}: {e}",
                self.consumer, self.stream
            ))
        })?;
        Ok(NatsStreamReader {
            consumer,
            target: format!("consumer `{}` of stream `{}`", self.consumer, self.stream),
        })
    }
}

/// How long past its expiry a pull waits for the server's answer.
const PULL_GRACE: Duration = Duration::from_secs(2);

/// The reader of a [`NatsStream`]: pulls batches from the consumer.
pub struct NatsStreamReader {
    consumer: PullConsumer,
    target: String,
}

/// Acknowledges one JetStream message.
pub struct NatsReceipt(Acker);

impl Receipt for NatsReceipt {
    async fn ack(self) -> Result<(), ConnectorError> {
        self.0
            .ack()
            .await
            .map_err(|e| ConnectorError::transient(format!("acknowledging a message: {e}")))
    }

    async fn release(self) {
        // Delivered again at once, instead of after the consumer's ack_wait.
        let _ = self.0.ack_with(AckKind::Nak(None)).await;
    }
}

impl StreamReader for NatsStreamReader {
    type Record = Value;
    type Offset = u64;
    type Receipt = NatsReceipt;

    async fn next(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Received<Self>>, ConnectorError> {
        // What is there now, without waiting; if nothing, wait up to `wait` for more. Each
        // pull is read to its end, so no delivered message is left behind unread.
        let mut out = self.pull(max, None).await?;
        if out.is_empty() && wait >= Duration::from_millis(1) {
            out = self.pull(max, Some(wait)).await?;
        }
        Ok(out)
    }

    async fn lag(&mut self) -> Option<u64> {
        self.consumer.get_info().await.ok().map(|i| i.num_pending)
    }
}

impl NatsStreamReader {
    async fn pull(
        &self,
        max: usize,
        wait: Option<Duration>,
    ) -> Result<Vec<Received<Self>>, ConnectorError> {
        let fail = |e: &dyn std::fmt::Display| {
            ConnectorError::transient(format!("pulling from {}: {e}", self.target))
        };
        let mut batch = match wait {
            None => self
                .consumer
                .fetch()
                .max_messages(max)
                .messages()
                .await
                .map_err(|e| fail(&e))?,
            Some(wait) => self
                .consumer
                .batch()
                .max_messages(max)
                .expires(wait)
                .messages()
                .await
                .map_err(|e| fail(&e))?,
        };
        // A pull request lost to a dropped connection is never answered: give up on it past
        // its own expiry, so the next pull goes out on the reconnected client.
        let give_up = tokio::time::sleep(wait.unwrap_or_default() + PULL_GRACE);
        tokio::pin!(give_up);
        let mut out = Vec::new();
        loop {
            let message = tokio::select! {
                message = batch.next() => message,
                _ = &mut give_up => {
                    if out.is_empty() {
                        return Err(fail(&"no answer from the server"));
                    }
                    break;
                }
            };
            let Some(message) = message else { break };
            let message = message.map_err(|e| fail(&e))?;
            let seq = match message.info() {
                Ok(info) => info.stream_sequence,
                Err(e) => return Err(fail(&e)),
            };
            let (message, acker) = message.split();
            let position = Position::at(seq);
            let record = match serde_json::from_slice::<Value>(&message.payload) {
                Ok(value) => Ok(Positioned { position, value }),
                Err(e) => Err(RecordError::new(
                    position,
                    format!(
                        "the message at stream sequence {seq} (subject `{}`) is not JSON: {e}",
                        message.subject
                    ),
                )),
            };
            out.push(Received {
                offset: seq,
                record,
                receipt: NatsReceipt(acker),
            });
        }
        Ok(out)
    }
}
