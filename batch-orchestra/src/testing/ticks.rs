//! A streaming test source: numbered records, resumable after any checkpoint.

use serde::{Deserialize, Serialize};
use std::time::Duration;

use super::fakes::{CountingSink, PAYLOAD_MARKER, TestRecord};
use crate::connector::{Received, StreamReader};
use crate::error::{ConnectorError, RecordError};
use crate::record::{Position, Positioned};

/// A stream of `count` [`TestRecord`]s with ids `0..count`, then nothing: a stream that went
/// quiet. The offset is a record's id; a reader opened after id `n` starts at `n + 1`.
///
/// ```
/// use batch_orchestra::testing::TickStream;
///
/// let ticks = TickStream::new(100).bad_every(10);
/// assert_eq!(ticks.count, 100);
/// ```
#[crate::batch_source(name = "ticks", reader = TickReader, streaming)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TickStream {
    /// Records in the stream.
    pub count: u64,
    /// Every record whose id is a multiple of this (from 1) cannot be decoded.
    pub bad_every: Option<u64>,
    /// Fail `open_stream` with a configuration error naming this stream.
    pub missing_stream: Option<String>,
}

impl TickStream {
    /// A stream of `count` good records.
    pub fn new(count: u64) -> Self {
        Self {
            count,
            bad_every: None,
            missing_stream: None,
        }
    }

    /// Makes every `n`th record (from 1) undecodable.
    pub fn bad_every(mut self, n: u64) -> Self {
        self.bad_every = Some(n);
        self
    }

    async fn open_stream(&self, after: Option<&u64>) -> Result<TickReader, ConnectorError> {
        if let Some(stream) = &self.missing_stream {
            return Err(ConnectorError::config(format!(
                "no stream `{stream}`: create it, or fix the name"
            )));
        }
        Ok(TickReader {
            next: after.map_or(0, |a| a + 1),
            config: self.clone(),
        })
    }
}

/// The reader of a [`TickStream`].
pub struct TickReader {
    next: u64,
    config: TickStream,
}

impl StreamReader for TickReader {
    type Record = TestRecord;
    type Offset = u64;
    type Receipt = ();

    async fn next(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Received<Self>>, ConnectorError> {
        if self.next >= self.config.count {
            tokio::time::sleep(wait).await;
            return Ok(Vec::new());
        }
        let end = (self.next + max as u64).min(self.config.count);
        let records = (self.next..end)
            .map(|id| {
                let position = Position::at(id);
                let bad = self
                    .config
                    .bad_every
                    .is_some_and(|n| n > 0 && (id + 1).is_multiple_of(n));
                let record = if bad {
                    Err(RecordError::new(
                        position,
                        format!("tick {id} cannot be decoded"),
                    ))
                } else {
                    Ok(Positioned {
                        position,
                        value: TestRecord {
                            id,
                            payload: format!("{PAYLOAD_MARKER}{id}"),
                        },
                    })
                };
                Received {
                    offset: id,
                    record,
                    receipt: (),
                }
            })
            .collect();
        self.next = end;
        Ok(records)
    }

    async fn lag(&mut self) -> Option<u64> {
        Some(self.config.count.saturating_sub(self.next))
    }
}

crate::pipeline! {
    /// A streaming pipeline from [`TickStream`] to [`CountingSink`], under the name
    /// `ticks-to-counting`.
    pub TicksToCounting {
        source: TickStream,
        sink: CountingSink,
    }
}
