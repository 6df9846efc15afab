//! Where a record sits in its source, and a record with its place.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a record sits in its source: used in error messages and for idempotent ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Position {
    /// Ordinal of the record in the source, from 0, not counting a header.
    pub record: u64,
    /// Line of the record's first byte, from 1, where the source has lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// Byte offset of the record's first byte, where the source has bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub byte: Option<u64>,
    /// For a record that a one-to-many transform made: its index among the records made from
    /// the same source record, from 0. Sinks that derive ids from positions add it, so the
    /// records stay apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<u32>,
}

impl Position {
    /// The position of record number `record` (from 0).
    pub fn at(record: u64) -> Self {
        Self {
            record,
            line: None,
            byte: None,
            part: None,
        }
    }

    /// Sets the line number (from 1).
    pub fn line(mut self, line: u64) -> Self {
        self.line = Some(line);
        self
    }

    /// Sets the byte offset.
    pub fn byte(mut self, byte: u64) -> Self {
        self.byte = Some(byte);
        self
    }

    /// Sets the index among the records a one-to-many transform made of one source record.
    pub fn part(mut self, part: u32) -> Self {
        self.part = Some(part);
        self
    }

    /// A key for the record, unique within its job: the byte offset (the record ordinal where
    /// the source has no bytes), then `.<part>` for the second and later records a
    /// one-to-many transform made of one source record. Sinks derive idempotent ids from it.
    ///
    /// ```
    /// use batch_orchestra::Position;
    ///
    /// assert_eq!(Position::at(4).byte(120).key(), "120");
    /// assert_eq!(Position::at(4).key(), "4");
    /// assert_eq!(Position::at(4).byte(120).part(0).key(), "120");
    /// assert_eq!(Position::at(4).byte(120).part(2).key(), "120.2");
    /// ```
    pub fn key(&self) -> String {
        let at = self.byte.unwrap_or(self.record);
        match self.part {
            Some(part) if part > 0 => format!("{at}.{part}"),
            _ => at.to_string(),
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "record {}", self.record)?;
        match (self.line, self.byte) {
            (Some(line), Some(byte)) => write!(f, " (line {line}, byte {byte})"),
            (Some(line), None) => write!(f, " (line {line})"),
            (None, Some(byte)) => write!(f, " (byte {byte})"),
            (None, None) => Ok(()),
        }?;
        match self.part {
            Some(part) => write!(f, ", output {part}"),
            None => Ok(()),
        }
    }
}

/// A record with its position in the source.
#[derive(Debug, Clone, PartialEq)]
pub struct Positioned<R> {
    /// Where the record was read.
    pub position: Position,
    /// The record.
    pub value: R,
}
