//! The sink: each record published as a JSON message to a subject a stream captures, with a
//! message id derived from the job and the record's position.
//!
//! JetStream drops a message whose id it has seen within the stream's duplicate window (two
//! minutes unless the stream says otherwise), so a retried batch publishes nothing twice and
//! counts the repeats as already present. A redrive or a rerun of the same job later than the
//! window publishes them again: widen the stream's `duplicate_window` when that matters.

use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::connector::{Sink, WriteContext, WriteOutcome};
use crate::error::{ConnectorError, RecordError};
use crate::record::Positioned;

/// A subject of a NATS JetStream stream as a sink of JSON records.
///
/// ```
/// use batch_orchestra::connectors::nats::NatsSink;
///
/// let sink = NatsSink::new("orders.imported").url_env("ORDERS_NATS_URL");
/// assert_eq!(sink.subject, "orders.imported");
/// ```
#[crate::batch_sink(name = "nats-jetstream", writer = NatsWriter)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatsSink {
    /// The environment variable holding the server URL (`nats://host:4222`), read by the
    /// worker.
    pub url_env: String,
    /// The subject to publish to; a stream must capture it.
    pub subject: String,
}

impl NatsSink {
    /// Publishes to `subject`, with the server URL from `NATS_URL`.
    pub fn new(subject: impl Into<String>) -> Self {
        Self {
            url_env: "NATS_URL".into(),
            subject: subject.into(),
        }
    }

    /// Reads the server URL from another environment variable.
    pub fn url_env(mut self, name: impl Into<String>) -> Self {
        self.url_env = name.into();
        self
    }

    async fn build_sink(&self) -> Result<NatsWriter, ConnectorError> {
        let (url, client) = super::connect(&self.url_env).await?;
        // Every writer on this worker shares the context's permits for unacknowledged
        // messages; each holds at most `ACK_CHUNK` of them (see `write`), so this many lets
        // 256 writers publish at once.
        let jetstream = jetstream::ContextBuilder::new()
            .max_ack_inflight(256 * ACK_CHUNK)
            .build(client);
        // A subject no stream captures would lose every message: refuse it up front.
        let stream = jetstream
            .stream_by_subject(self.subject.clone())
            .await
            .map_err(|e| {
                ConnectorError::config(format!(
                    "no JetStream stream captures subject `{}` at {url} ({e}): create one, or fix the subject",
                    self.subject
                ))
            })?;
        Ok(NatsWriter {
            jetstream,
            subject: self.subject.clone(),
            target: format!("{url} subject `{}` (stream `{stream}`)", self.subject),
        })
    }
}

/// A built [`NatsSink`]: a JetStream context shared by the batches of a worker.
pub struct NatsWriter {
    jetstream: jetstream::Context,
    subject: String,
    target: String,
}

impl Sink for NatsWriter {
    type Record = Value;

    async fn write(
        &self,
        ctx: &WriteContext,
        records: Vec<Positioned<Value>>,
    ) -> Result<WriteOutcome, ConnectorError> {
        let mut outcome = WriteOutcome::default();
        // Publish up to `ACK_CHUNK` messages, then wait for their acknowledgements: pipelined,
        // but never holding more of the context's permits than that. A writer that held one
        // per record could wait for a permit that only its own unawaited acks would free.
        let mut acks = Vec::with_capacity(ACK_CHUNK.min(records.len()));
        for record in records {
            if acks.len() == ACK_CHUNK {
                self.await_acks(&mut acks, &mut outcome).await?;
            }
            let payload = match serde_json::to_vec(&record.value) {
                Ok(bytes) => bytes,
                Err(e) => {
                    outcome.errors.push(RecordError::new(
                        record.position,
                        format!("cannot encode the record as JSON: {e}"),
                    ));
                    continue;
                }
            };
            let id = format!("{}:{}", ctx.job_id, record.position.key());
            let publish = PublishMessage::build()
                .payload(payload.into())
                .message_id(id);
            match self
                .jetstream
                .send_publish(self.subject.clone(), publish)
                .await
            {
                Ok(ack) => acks.push(ack),
                Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                    outcome.errors.push(RecordError::new(
                        record.position,
                        "the message is larger than the NATS server's max_payload",
                    ));
                }
                Err(e) => return Err(self.error(&e)),
            }
        }
        self.await_acks(&mut acks, &mut outcome).await?;
        Ok(outcome)
    }
}

/// Messages one write publishes before it waits for their acknowledgements.
const ACK_CHUNK: usize = 256;

impl NatsWriter {
    async fn await_acks(
        &self,
        acks: &mut Vec<jetstream::context::PublishAckFuture>,
        outcome: &mut WriteOutcome,
    ) -> Result<(), ConnectorError> {
        for ack in acks.drain(..) {
            let ack = ack.await.map_err(|e| self.error(&e))?;
            if ack.duplicate {
                outcome.already_present += 1;
            } else {
                outcome.written += 1;
            }
        }
        Ok(())
    }

    /// A stream that went away is a configuration error; the rest (timeouts, a broken
    /// connection) may pass and is retried.
    fn error(&self, e: &jetstream::context::PublishError) -> ConnectorError {
        let message = format!("publishing to NATS {}: {e}", self.target);
        match e.kind() {
            PublishErrorKind::StreamNotFound => ConnectorError::config(message),
            _ => ConnectorError::transient(message),
        }
    }
}
