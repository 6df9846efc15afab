//! The MongoDB sink: unordered `insert_many`, idempotent by construction.
//!
//! The connection string is read by the worker from an environment variable named in the
//! config (`MONGODB_URI` by default), so no secret enters workflow history. Each record's
//! `_id` is derived from the job and the record's position (or taken from a field you name),
//! so a retried or replayed batch hits duplicate-key errors, which are counted as already
//! written when the stored document is the record's own. The client and its pool are made
//! once per worker and config.

use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;

use mongodb::bson::{Bson, Document, doc};
use mongodb::error::ErrorKind;
use mongodb::options::ClientOptions;

use crate::connector::{Sink, WriteContext, WriteOutcome};
use crate::error::{ConnectorError, RecordError};
use crate::record::Positioned;

mod upsert;

/// MongoDB's duplicate-key error code.
const DUPLICATE_KEY: i32 = 11000;
/// MongoDB's authentication-failed error code.
const AUTH_FAILED: i32 = 18;

/// How each document's `_id` is chosen.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum IdStrategy {
    /// `"<job id>:<position key>"`: the byte offset (or the record ordinal where the source has
    /// no bytes), see [`Position::key`](crate::Position::key).
    #[default]
    Position,
    /// The value of this field of the document. A stored document with the same `_id` counts as
    /// already present only when it equals the record's document; a different document under
    /// the id (a duplicate id in the data with other fields, or a document written by someone
    /// else) is a key conflict, reported as a record error.
    Field(String),
}

/// How documents are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum WriteMode {
    /// Insert; a document already there with the record's values is counted as already
    /// present, a different one under the same `_id` is a key conflict (a record error), and
    /// stored documents are never changed.
    #[default]
    Insert,
    /// Replace the document with the record's `_id`, or insert it. With a
    /// [version field](MongoSink::version_field), only a stored document with a lower version
    /// (or none) is replaced: an older record is superseded, never written over a newer one.
    /// Without one, the last write wins: a batch retried or redriven after a later batch
    /// wrote the same `_id` writes its older document back.
    Upsert,
}

/// How long a write must last before the server acknowledges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Durability {
    /// The server acknowledges a write once it is in its journal (`j: true`): a server that
    /// crashes after acknowledging loses nothing, if it honours `j: true` (`mongod` does;
    /// SecantusDB only when started with `--sync-on-commit`).
    #[default]
    Journaled,
    /// The server's own default: acknowledged from memory, faster, and a crash can lose
    /// writes the job counted as written.
    Acknowledged,
}

/// A MongoDB collection as a sink of documents.
///
/// Durability: writes are journaled by default ([`Durability::Journaled`]), so a server
/// that crashes loses nothing the job counted as written. [`MongoSink::acknowledged`] opts
/// out for speed. A write concern in the connection string (`journal=`, `w=majority` on a
/// replica set) takes precedence.
///
/// ```
/// use batch_orchestra::connectors::mongo::MongoSink;
///
/// let sink = MongoSink::new("demo", "people").uri_env("PEOPLE_DB_URI");
/// assert_eq!(sink.uri_env, "PEOPLE_DB_URI");
/// ```
#[crate::batch_sink(name = "mongodb", writer = MongoWriter)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MongoSink {
    /// The environment variable holding the connection string, read by the worker.
    pub uri_env: String,
    /// The database.
    pub database: String,
    /// The collection.
    pub collection: String,
    /// How `_id`s are chosen.
    #[serde(default)]
    pub id: IdStrategy,
    /// Insert or upsert.
    #[serde(default)]
    pub mode: WriteMode,
    /// For upserts: the field that orders versions of a document (see [`WriteMode::Upsert`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_field: Option<String>,
    /// When the server acknowledges a write.
    #[serde(default)]
    pub durability: Durability,
}

impl MongoSink {
    /// Inserts into `database.collection`, with the URI from `MONGODB_URI`.
    pub fn new(database: impl Into<String>, collection: impl Into<String>) -> Self {
        Self {
            uri_env: "MONGODB_URI".into(),
            database: database.into(),
            collection: collection.into(),
            id: IdStrategy::Position,
            mode: WriteMode::Insert,
            version_field: None,
            durability: Durability::Journaled,
        }
    }

    /// Writes are acknowledged from the server's memory, not its journal: faster, and a
    /// server crash can lose writes the job counted (see [`Durability`]).
    pub fn acknowledged(mut self) -> Self {
        self.durability = Durability::Acknowledged;
        self
    }

    /// Reads the connection string from another environment variable.
    pub fn uri_env(mut self, name: impl Into<String>) -> Self {
        self.uri_env = name.into();
        self
    }

    /// Takes each `_id` from `field`.
    pub fn id_field(mut self, field: impl Into<String>) -> Self {
        self.id = IdStrategy::Field(field.into());
        self
    }

    /// Replaces documents with the same `_id` instead of skipping them; the last write wins
    /// unless a [version field](Self::version_field) orders them.
    pub fn upsert(mut self) -> Self {
        self.mode = WriteMode::Upsert;
        self
    }

    /// Upserts, replacing a stored document only when the record's `field` is higher: a
    /// retried or late older version never overwrites a newer one.
    pub fn version_field(mut self, field: impl Into<String>) -> Self {
        self.mode = WriteMode::Upsert;
        self.version_field = Some(field.into());
        self
    }

    async fn build_sink(&self) -> Result<MongoWriter, ConnectorError> {
        if let (IdStrategy::Position, Some(field)) = (&self.id, &self.version_field) {
            return Err(ConnectorError::config(format!(
                "MongoDB sink `{}.{}`: a version field (`{field}`) orders the versions of one document, and ids made from positions are never shared by two records: take ids from a field (`id = {{ Field = \"id\" }}`, `.id_field(\"id\")`)",
                self.database, self.collection
            )));
        }
        if let (WriteMode::Insert, Some(field)) = (self.mode, &self.version_field) {
            return Err(ConnectorError::config(format!(
                "MongoDB sink `{}.{}`: a version field (`{field}`) orders upserts, and the sink inserts: set `mode = \"Upsert\"` or drop `version_field`",
                self.database, self.collection
            )));
        }
        let uri = std::env::var(&self.uri_env).map_err(|_| {
            ConnectorError::config(format!(
                "the environment variable `{}` is not set on the worker: it must hold the MongoDB connection string",
                self.uri_env
            ))
        })?;
        let mut options = ClientOptions::parse(&uri).await.map_err(|e| {
            ConnectorError::config(format!(
                "bad MongoDB connection string in `{}`: {e}",
                self.uri_env
            ))
        })?;
        // Fail in seconds, not thirty, when the server is unreachable; the URI may say otherwise.
        options
            .server_selection_timeout
            .get_or_insert(Duration::from_secs(5));
        options
            .app_name
            .get_or_insert_with(|| "batch-orchestra".into());
        if self.durability == Durability::Journaled {
            let concern = options.write_concern.get_or_insert_with(Default::default);
            concern.journal.get_or_insert(true);
        }
        let hosts = options
            .hosts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let client = mongodb::Client::with_options(options)
            .map_err(|e| ConnectorError::config(format!("bad MongoDB options for {hosts}: {e}")))?;
        let database = client.database(&self.database);
        database
            .run_command(doc! { "ping": 1 })
            .await
            .map_err(|e| classify(&hosts, &e))?;
        Ok(MongoWriter {
            collection: database.collection(&self.collection),
            database,
            id: self.id.clone(),
            mode: self.mode,
            version_field: self.version_field.clone(),
            target: format!("{hosts}/{}.{}", self.database, self.collection),
        })
    }
}

/// Configuration problems are not retried; everything else is. An unreachable server is
/// said in one line; the driver's topology dump goes to the log.
fn classify(target: &str, e: &mongodb::error::Error) -> ConnectorError {
    if let ErrorKind::ServerSelection { message, .. } = &*e.kind {
        tracing::debug!(target = %target, error = %e, "MongoDB server selection failed");
        let lower = message.to_lowercase();
        let why = if lower.contains("connection refused") {
            "connection refused"
        } else if lower.contains("timed out") || lower.contains("timeout") {
            "timed out"
        } else if lower.contains("dns") || lower.contains("lookup") {
            "the host name does not resolve"
        } else {
            "no server answered"
        };
        let host = target.split('/').next().unwrap_or(target);
        return ConnectorError::transient(format!("cannot reach MongoDB at {host} ({why})"));
    }
    let message = format!("MongoDB at {target}: {e}");
    match &*e.kind {
        ErrorKind::Authentication { .. } | ErrorKind::InvalidArgument { .. } => {
            ConnectorError::config(message)
        }
        ErrorKind::Command(c) if c.code == AUTH_FAILED => ConnectorError::config(message),
        _ => ConnectorError::transient(message),
    }
}

/// A built MongoDB sink.
pub struct MongoWriter {
    collection: mongodb::Collection<Document>,
    /// The collection's database, for commands.
    database: mongodb::Database,
    id: IdStrategy,
    mode: WriteMode,
    version_field: Option<String>,
    target: String,
}

impl MongoWriter {
    fn with_id(
        &self,
        ctx: &WriteContext,
        record: Positioned<Document>,
    ) -> Result<Document, RecordError> {
        let Positioned {
            position,
            value: mut doc,
        } = record;
        match &self.id {
            IdStrategy::Position => {
                doc.insert("_id", format!("{}:{}", ctx.job_id, position.key()));
            }
            IdStrategy::Field(field) => match doc.get(field).cloned() {
                Some(Bson::Null) | None => {
                    return Err(RecordError::new(
                        position,
                        format!("the id field `{field}` is missing or null"),
                    ));
                }
                Some(value) => {
                    doc.insert("_id", value);
                }
            },
        }
        Ok(doc)
    }
}

impl Sink for MongoWriter {
    type Record = Document;

    async fn write(
        &self,
        ctx: &WriteContext,
        records: Vec<Positioned<Document>>,
    ) -> Result<WriteOutcome, ConnectorError> {
        let mut outcome = WriteOutcome::default();
        let mut docs = Vec::with_capacity(records.len());
        let mut positions = Vec::with_capacity(records.len());
        for record in records {
            let position = record.position;
            match self.with_id(ctx, record) {
                Ok(doc) => {
                    docs.push(doc);
                    positions.push(position);
                }
                Err(e) => outcome.errors.push(e),
            }
        }
        if docs.is_empty() {
            return Ok(outcome);
        }
        match self.mode {
            WriteMode::Insert => self.insert(docs, &positions, outcome).await,
            WriteMode::Upsert => self.upsert(docs, &positions, outcome).await,
        }
    }
}

impl MongoWriter {
    async fn insert(
        &self,
        docs: Vec<Document>,
        positions: &[crate::Position],
        mut outcome: WriteOutcome,
    ) -> Result<WriteOutcome, ConnectorError> {
        let total = docs.len() as u64;
        match self.collection.insert_many(&docs).ordered(false).await {
            Ok(_) => outcome.written += total,
            Err(e) => match &*e.kind {
                ErrorKind::InsertMany(failure) if failure.write_concern_error.is_none() => {
                    let errors = failure.write_errors.as_deref().unwrap_or_default();
                    let mut same_id = Vec::new();
                    for err in errors {
                        match Refusal::of(err.code, &err.message) {
                            Refusal::SameId => same_id.push(err.index),
                            refusal => {
                                let position =
                                    positions.get(err.index).copied().ok_or_else(|| {
                                        ConnectorError::transient(format!(
                                            "MongoDB at {}: a write error for document {} of {}",
                                            self.target, err.index, total
                                        ))
                                    })?;
                                outcome.errors.push(refusal.record_error(position));
                            }
                        }
                    }
                    outcome.written += total - errors.len() as u64;
                    let conflicts = self.key_conflicts(&docs, &same_id).await?;
                    outcome.already_present += (same_id.len() - conflicts.len()) as u64;
                    for (index, message) in conflicts {
                        outcome
                            .errors
                            .push(RecordError::new(positions[index], message));
                    }
                }
                _ => return Err(classify(&self.target, &e)),
            },
        }
        Ok(outcome)
    }

    /// The stored documents with the `_id`s of `docs`, by [`id_key`].
    async fn stored_by_id<'a>(
        &self,
        docs: impl Iterator<Item = &'a Document>,
    ) -> Result<HashMap<String, Document>, ConnectorError> {
        let ids: Vec<Bson> = docs.map(id_of).collect();
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let stored: Vec<Document> = self
            .collection
            .find(doc! { "_id": { "$in": ids } })
            .await
            .map_err(|e| classify(&self.target, &e))?
            .try_collect()
            .await
            .map_err(|e| classify(&self.target, &e))?;
        Ok(stored.into_iter().map(|s| (id_key(&s), s)).collect())
    }

    /// Of the documents at `indices`, refused for a duplicate `_id`, those whose stored
    /// document differs: each one's index and its record error. The others are already
    /// present. Empty for position ids, which only the same record at the same position has.
    async fn key_conflicts(
        &self,
        docs: &[Document],
        indices: &[usize],
    ) -> Result<Vec<(usize, String)>, ConnectorError> {
        let IdStrategy::Field(field) = &self.id else {
            return Ok(Vec::new());
        };
        if indices.is_empty() {
            return Ok(Vec::new());
        }
        let stored = self.stored_by_id(indices.iter().map(|&i| &docs[i])).await?;
        let mut conflicts = Vec::new();
        for &index in indices {
            let doc = &docs[index];
            let Some(twin) = stored.get(&id_key(doc)) else {
                // Refused for its id, and the id is gone: removed since; write it again.
                return Err(ConnectorError::transient(format!(
                    "MongoDB at {}: a document refused for a duplicate `_id` is no longer there",
                    self.target
                )));
            };
            if twin == doc {
                continue;
            }
            let differs = differing_fields(doc, twin);
            conflicts.push((
                index,
                format!(
                    "key conflict: the collection already holds a different document with this record's `_id` (from `{field}`); it differs in {differs}. The sink inserts and never overwrites a document: remove the duplicate id from the data, or write in upsert mode"
                ),
            ));
        }
        Ok(conflicts)
    }
}

/// A document's `_id` (`null` when it has none).
fn id_of(doc: &Document) -> Bson {
    doc.get("_id").cloned().unwrap_or(Bson::Null)
}

/// A document's `_id` as a map key: its debug form, which keeps its type, as `==` on `Bson`
/// does.
fn id_key(doc: &Document) -> String {
    format!("{:?}", doc.get("_id").unwrap_or(&Bson::Null))
}

/// The fields (of either document) in which `doc` and `twin` differ: `` `a`, `b` ``.
fn differing_fields(doc: &Document, twin: &Document) -> String {
    let mut differs: Vec<&str> = doc
        .iter()
        .filter(|(k, v)| twin.get(k.as_str()) != Some(*v))
        .map(|(k, _)| k.as_str())
        .chain(
            twin.keys()
                .filter(|k| !doc.contains_key(k.as_str()))
                .map(String::as_str),
        )
        .collect();
    differs.sort_unstable();
    differs
        .iter()
        .map(|f| format!("`{f}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why MongoDB refused one document.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// A duplicate key on `_id`: the record's own id, so it was written before.
    SameId,
    /// A duplicate key on another unique index: a different record holds the value.
    UniqueIndex { index: String, fields: Vec<String> },
    /// Any other refusal (validation, size).
    Other(String),
}

impl Refusal {
    /// Reads a write error: only a duplicate key on the `_id_` index means "already
    /// written"; another unique index refusing the document is the record's error.
    fn of(code: i32, message: &str) -> Self {
        if code != DUPLICATE_KEY {
            return Self::Other(crate::error::redact_values(message));
        }
        // "E11000 duplicate key error collection: db.c index: email_1 dup key: { email: ... }"
        let index = message
            .split_once("index: ")
            .map(|(_, rest)| {
                rest.split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
            .unwrap_or_default();
        if index == "_id_" || (index.is_empty() && message.contains("_id")) {
            return Self::SameId;
        }
        let fields = message
            .split_once("dup key: {")
            .map(|(_, rest)| key_fields(rest))
            .unwrap_or_default();
        Self::UniqueIndex { index, fields }
    }

    fn record_error(self, position: crate::Position) -> RecordError {
        let message = match self {
            Self::SameId => "the document's `_id` is already present".to_owned(),
            Self::UniqueIndex { index, fields } => {
                let fields = if fields.is_empty() {
                    String::new()
                } else {
                    format!(
                        " on {}",
                        fields
                            .iter()
                            .map(|f| format!("`{f}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                let index = if index.is_empty() {
                    "a unique index".to_owned()
                } else {
                    format!("unique index `{index}`")
                };
                format!(
                    "MongoDB refused the document: another document holds the same value in {index}{fields}"
                )
            }
            Self::Other(message) => format!("MongoDB refused the document: {message}"),
        };
        RecordError::new(position, message)
    }
}

/// The field names of a duplicate key's `{ a: .., b: .. }`, without their values.
fn key_fields(key: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut token = String::new();
    let mut expecting_name = true;
    for c in key.chars() {
        match c {
            '"' => in_string = !in_string,
            _ if in_string => {}
            '{' | '[' => depth += 1,
            '}' | ']' if depth == 0 => break,
            '}' | ']' => depth -= 1,
            ':' if depth == 0 && expecting_name => {
                fields.push(token.trim().to_owned());
                token.clear();
                expecting_name = false;
            }
            ',' if depth == 0 => expecting_name = true,
            _ if depth == 0 && expecting_name => token.push(c),
            _ => {}
        }
    }
    fields.retain(|f| !f.is_empty());
    fields
}

/// Converts a CSV row to a document of strings, in column order: the transform of the
/// CSV -> MongoDB recipe.
#[cfg(feature = "csv")]
pub fn row_to_document(
    row: crate::connectors::csv::CsvRow,
) -> Result<Document, crate::TransformError> {
    let mut doc = Document::new();
    for (column, value) in row.iter() {
        doc.insert(column.into_owned(), value);
    }
    Ok(doc)
}

/// Converts a JSON object (a record of the JSON Lines, PostgreSQL or Parquet sources) to a
/// document: the transform of the JSON Lines, PostgreSQL or Parquet -> MongoDB recipes. A
/// value that is not an object is a record error.
///
/// ```
/// use batch_orchestra::connectors::mongo::value_to_document;
///
/// let doc = value_to_document(serde_json::json!({"id": 7, "tags": ["a"]})).unwrap();
/// assert_eq!(doc.get_i64("id").unwrap(), 7);
/// assert!(value_to_document(serde_json::json!([1])).is_err());
/// ```
pub fn value_to_document(value: serde_json::Value) -> Result<Document, crate::TransformError> {
    match value {
        serde_json::Value::Object(_) => mongodb::bson::to_document(&value).map_err(|e| {
            crate::TransformError::new(format!(
                "cannot make a document: {}",
                crate::error::redact_values(&e.to_string())
            ))
        }),
        _ => Err(crate::TransformError::new(
            "a MongoDB document is made from a JSON object",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duplicate_id_is_already_present() {
        let message = r#"E11000 duplicate key error collection: crm.people index: _id_ dup key: { _id: "job:12" }"#;
        assert_eq!(Refusal::of(DUPLICATE_KEY, message), Refusal::SameId);
    }

    #[test]
    fn another_unique_index_is_a_record_error_naming_index_and_field_not_value() {
        let message = r#"E11000 duplicate key error collection: crm.people index: email_1 dup key: { email: "ann@example.com" }"#;
        let refusal = Refusal::of(DUPLICATE_KEY, message);
        assert_eq!(
            refusal,
            Refusal::UniqueIndex {
                index: "email_1".into(),
                fields: vec!["email".into()]
            }
        );
        let error = refusal.record_error(crate::Position::at(3));
        assert!(error.message.contains("`email_1`"), "{}", error.message);
        assert!(error.message.contains("`email`"), "{}", error.message);
        assert!(!error.message.contains("ann@"), "{}", error.message);
    }

    #[test]
    fn compound_keys_name_every_field() {
        assert_eq!(
            key_fields(r#" a: "x, y", b: { c: 1 } }"#),
            vec!["a".to_owned(), "b".to_owned()]
        );
    }
}
