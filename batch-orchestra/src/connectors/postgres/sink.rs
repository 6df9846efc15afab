//! The PostgreSQL sink: `COPY` into a staging table, then insert or upsert from it (see
//! [`WriteMode`]).

use bytes::{BufMut, BytesMut};
use futures::SinkExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use tokio_postgres::error::SqlState;

use super::write_mode::{Applied, NotApplied, WriteMode};
use super::{Database, db_message, quote_ident};
use crate::connector::{Sink, WriteContext, WriteOutcome};
use crate::error::{ConnectorError, RecordError};
use crate::record::{Position, Positioned};

/// The staging table each write copies into; it lives for one transaction.
pub(super) const STAGE: &str = "batch_orchestra_stage";
/// The staging table's own column: each row's index in the batch, so a row the server
/// names can be traced to its record.
pub(super) const LINE: &str = "batch_orchestra_line";

/// What makes a row the same row when a batch is written again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConflictKey {
    /// The sink fills this text column with `"<job id>:<position key>"`: the byte offset, or
    /// the record ordinal where the source has no bytes (see
    /// [`Position::key`](crate::Position::key)); the table needs a unique index on it.
    Position(String),
    /// These columns of the record; the table needs a unique index on them. A row already
    /// stored under the key counts as already present only when it holds the record's values;
    /// a different row under the same key is a key conflict, reported as a record error.
    Columns(Vec<String>),
}

impl Default for ConflictKey {
    fn default() -> Self {
        Self::Position("batch_key".into())
    }
}

/// A PostgreSQL table as a sink of rows (JSON objects of column values).
///
/// Each batch is copied (`COPY ... FROM STDIN`) into a temporary staging table and inserted
/// from there with `ON CONFLICT DO NOTHING`, in one transaction: a retried or redriven batch
/// writes nothing twice and its rows are counted as already present. The table needs a unique
/// index on the [`ConflictKey`]. A value the column's type refuses, a missing `NOT NULL`
/// value or a failed `CHECK` is a record error with the record's position, and the rest of
/// the batch is written.
///
/// "Already present" means the same record: with [`ConflictKey::Columns`], a stored row under
/// the record's key counts only when its columns hold the record's values (compared as
/// PostgreSQL prints them). A different row under the same key (a duplicate key in the data
/// with other values, or a row the table got from elsewhere) is a key conflict: a record
/// error naming the key and the columns that differ, never a row silently not written. By
/// default the sink inserts and never overwrites a stored row; [`PostgresSink::upsert`]
/// writes newer versions of rows over older ones (see [`WriteMode::Upsert`]).
///
/// Values are given to PostgreSQL as text: strings as they are, numbers and booleans in JSON's
/// spelling, JSON arrays as array literals for array columns, other arrays and objects as JSON
/// text (for `json`/`jsonb` columns); `null` is SQL `NULL`. Columns a row does not have are
/// `NULL` (or their default when no row of the batch has them); a key that is not a column is
/// a record error.
///
/// ```
/// use batch_orchestra::connectors::postgres::{ConflictKey, PostgresSink};
///
/// let sink = PostgresSink::new("public.people").key_columns(["id"]).url_env("CRM_DATABASE_URL");
/// assert_eq!(sink.key, ConflictKey::Columns(vec!["id".into()]));
/// ```
#[crate::batch_sink(name = "postgres", writer = PostgresWriter)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostgresSink {
    /// The environment variable holding the connection string, read by the worker.
    pub url_env: String,
    /// The table, optionally schema-qualified (`schema.table`), as SQL would name it.
    pub table: String,
    /// What identifies a row when a batch is written again.
    #[serde(default)]
    pub key: ConflictKey,
    /// Insert only, or upsert by version.
    #[serde(default, skip_serializing_if = "WriteMode::is_append")]
    pub mode: WriteMode,
}

impl PostgresSink {
    /// Writes into `table`, with the connection string from `DATABASE_URL` and rows keyed by
    /// their position in the `batch_key` column.
    pub fn new(table: impl Into<String>) -> Self {
        Self {
            url_env: "DATABASE_URL".into(),
            table: table.into(),
            key: ConflictKey::default(),
            mode: WriteMode::Append,
        }
    }

    /// Reads the connection string from another environment variable.
    pub fn url_env(mut self, name: impl Into<String>) -> Self {
        self.url_env = name.into();
        self
    }

    /// Rows are the same row when these columns are equal (the table's primary key, say).
    pub fn key_columns<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.key = ConflictKey::Columns(columns.into_iter().map(Into::into).collect());
        self
    }

    /// The sink writes each record's position into this text column, which identifies it.
    pub fn position_key(mut self, column: impl Into<String>) -> Self {
        self.key = ConflictKey::Position(column.into());
        self
    }

    /// Upserts on the [key columns](Self::key_columns): a record replaces the stored row
    /// under its key when its `version` column is higher (see [`WriteMode::Upsert`]).
    pub fn upsert(mut self, version: impl Into<String>) -> Self {
        self.mode = WriteMode::Upsert {
            version: version.into(),
        };
        self
    }

    async fn build_sink(&self) -> Result<PostgresWriter, ConnectorError> {
        let db = Database::connect(&self.url_env).await?;
        let client = db.client().await?;
        let table: String = client
            .query_one("SELECT $1::text::regclass::text", &[&self.table])
            .await
            .map_err(|e| db.error(&e))?
            .get(0);
        let rows = client
            .query(
                "SELECT a.attname::text, t.typcategory = 'A'
                 FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                 WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped
                   AND a.attgenerated = ''
                 ORDER BY a.attnum",
                &[&self.table],
            )
            .await
            .map_err(|e| db.error(&e))?;
        let columns: Vec<Column> = rows
            .iter()
            .map(|r| Column {
                name: r.get(0),
                is_array: r.get(1),
            })
            .collect();
        let names = || {
            columns
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let key = match &self.key {
            ConflictKey::Position(c) => vec![c.clone()],
            ConflictKey::Columns(cs) if cs.is_empty() => {
                return Err(ConnectorError::config(format!(
                    "PostgreSQL sink `{table}`: the key needs at least one column"
                )));
            }
            ConflictKey::Columns(cs) => cs.clone(),
        };
        let index: HashMap<String, usize> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), i))
            .collect();
        for k in &key {
            if !index.contains_key(k) {
                return Err(ConnectorError::config(format!(
                    "PostgreSQL at {}: table `{table}` has no column `{k}` for the sink's key (its columns: {})",
                    db.target,
                    names()
                )));
            }
        }
        let (position_index, key_columns) = match &self.key {
            ConflictKey::Position(c) => (index.get(c).copied(), Vec::new()),
            ConflictKey::Columns(cs) => (None, cs.clone()),
        };
        if let WriteMode::Upsert { version } = &self.mode {
            if key_columns.is_empty() {
                return Err(ConnectorError::config(format!(
                    "PostgreSQL sink `{table}`: upsert needs the key columns rows are matched on: add `.key_columns([..])` (`key = {{ Columns = [..] }}` in a job file)"
                )));
            }
            if !index.contains_key(version) {
                return Err(ConnectorError::config(format!(
                    "PostgreSQL at {}: table `{table}` has no column `{version}` for the upsert's version (its columns: {})",
                    db.target,
                    names()
                )));
            }
            if key_columns.contains(version) {
                return Err(ConnectorError::config(format!(
                    "PostgreSQL sink `{table}`: the version column `{version}` is one of the key columns; versions order the rows of one key, so it must be another column"
                )));
            }
        }
        Ok(PostgresWriter {
            create_stage: format!(
                "CREATE TEMP TABLE {STAGE} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS, {LINE} int) ON COMMIT DROP"
            ),
            db,
            table,
            columns,
            index,
            conflict: key
                .iter()
                .map(|k| quote_ident(k))
                .collect::<Vec<_>>()
                .join(", "),
            position_index,
            key_columns,
            mode: self.mode.clone(),
        })
    }
}

#[derive(Debug)]
pub(super) struct Column {
    pub name: String,
    is_array: bool,
}

/// A built PostgreSQL sink: a pool and the table's columns.
pub struct PostgresWriter {
    pub(super) db: Database,
    /// The table's name as SQL writes it (quoted and qualified where needed).
    pub(super) table: String,
    pub(super) columns: Vec<Column>,
    /// Each column's index in `columns`, by name.
    index: HashMap<String, usize>,
    /// The conflict target, quoted: `"id"` or `"a", "b"`.
    pub(super) conflict: String,
    /// The column the sink fills with each record's position, for a position key.
    position_index: Option<usize>,
    /// The key columns (none for a position key).
    pub(super) key_columns: Vec<String>,
    pub(super) mode: WriteMode,
    /// The statement that makes the staging table of one transaction.
    create_stage: String,
}

/// One row ready for `COPY`: its position and its cells, in the batch's column order.
struct Line {
    position: Position,
    cells: Vec<Option<String>>,
}

impl Sink for PostgresWriter {
    type Record = Value;

    async fn write(
        &self,
        ctx: &WriteContext,
        records: Vec<Positioned<Value>>,
    ) -> Result<WriteOutcome, ConnectorError> {
        let mut outcome = WriteOutcome::default();
        let (columns, mut lines) = self.lines(ctx, records, &mut outcome.errors);
        if lines.is_empty() {
            return Ok(outcome);
        }
        let mut client = self.db.client().await?;
        let mut tx = client.transaction().await.map_err(|e| self.db.error(&e))?;
        tx.batch_execute(&self.create_stage)
            .await
            .map_err(|e| self.db.error(&e))?;
        let copy = self.copy_statement(&columns);
        let Some(staged) = self
            .copy_refusing_bad_rows(&mut tx, &copy, &mut lines, &mut outcome.errors)
            .await?
        else {
            // The server refused a row without saying which: find it row by row.
            drop(tx);
            return self
                .write_one_by_one(&mut client, &columns, &copy, lines, outcome)
                .await;
        };
        match self.apply(&tx, &columns, staged).await {
            Ok(applied) => self.account(applied, &lines, &mut outcome)?,
            Err(NotApplied::RowRefused(_)) => {
                // A foreign key or another check the staging table does not have: find the
                // rows one by one.
                drop(tx);
                return self
                    .write_one_by_one(&mut client, &columns, &copy, lines, outcome)
                    .await;
            }
            Err(NotApplied::Failed(e)) => return Err(e),
        }
        tx.commit().await.map_err(|e| self.db.error(&e))?;
        Ok(outcome)
    }
}

impl PostgresWriter {
    /// The batch's columns (indexes into the table's, in table order) and its rows; records
    /// that are not objects or name unknown columns become record errors.
    fn lines(
        &self,
        ctx: &WriteContext,
        records: Vec<Positioned<Value>>,
        errors: &mut Vec<RecordError>,
    ) -> (Vec<usize>, Vec<Line>) {
        let mut used = vec![false; self.columns.len()];
        let position_index = self.position_index;
        if let Some(i) = position_index {
            used[i] = true;
        }
        let mut objects = Vec::with_capacity(records.len());
        'records: for record in records {
            let Value::Object(map) = record.value else {
                errors.push(RecordError::new(
                    record.position,
                    format!(
                        "the PostgreSQL sink takes a JSON object of column values, not {}",
                        kind(&record.value)
                    ),
                ));
                continue;
            };
            let mut present = Vec::with_capacity(map.len());
            for key in map.keys() {
                match self.index.get(key) {
                    Some(&i) => present.push(i),
                    None => {
                        errors.push(RecordError::new(
                            record.position,
                            format!("table `{}` has no column `{key}`", self.table),
                        ));
                        continue 'records;
                    }
                }
            }
            // Without its key a row would be new on every attempt (a default, or NULLs that
            // never conflict), and a retried batch would write it twice.
            // The upsert's version too: without it the row has no place among its versions.
            let mut required = (self.key_columns.iter().map(|k| ("key", k.as_str())))
                .chain(self.mode.version().map(|v| ("version", v)));
            if let Some((what, missing)) =
                required.find(|(_, k)| map.get(*k).is_none_or(Value::is_null))
            {
                errors.push(RecordError::new(
                    record.position,
                    format!("the {what} column `{missing}` is missing or null"),
                ));
                continue;
            }
            for i in present {
                used[i] = true;
            }
            objects.push((record.position, map));
        }
        let columns: Vec<usize> = (0..self.columns.len()).filter(|&i| used[i]).collect();
        let lines = objects
            .into_iter()
            .map(|(position, mut map)| {
                let cells = columns
                    .iter()
                    .map(|&i| {
                        if Some(i) == position_index {
                            return Some(format!("{}:{}", ctx.job_id, position.key()));
                        }
                        let column = &self.columns[i];
                        cell(map.remove(&column.name)?, column.is_array)
                    })
                    .collect();
                Line { position, cells }
            })
            .collect();
        (columns, lines)
    }

    /// Copies `lines` into the staging table; a row the server refuses (a value its column's
    /// type rejects, a missing `NOT NULL` value, a failed `CHECK`) is taken out as a record
    /// error and the copy starts again without it. Returns how many rows were staged, or
    /// `None` when the server refused a row without saying which one.
    async fn copy_refusing_bad_rows(
        &self,
        tx: &mut tokio_postgres::Transaction<'_>,
        copy: &str,
        lines: &mut Vec<Line>,
        errors: &mut Vec<RecordError>,
    ) -> Result<Option<u64>, ConnectorError> {
        loop {
            if lines.is_empty() {
                return Ok(Some(0));
            }
            let attempt = tx.savepoint("copy").await.map_err(|e| self.db.error(&e))?;
            match copy_lines(&attempt, copy, lines).await {
                Ok(n) => {
                    attempt.commit().await.map_err(|e| self.db.error(&e))?;
                    return Ok(Some(n));
                }
                Err(e) => {
                    attempt.rollback().await.map_err(|e| self.db.error(&e))?;
                    if !is_row_error(&e) {
                        return Err(self.db.error(&e));
                    }
                    let Some((line, column, message)) = refused_row(&e) else {
                        return Ok(None);
                    };
                    let Some(index) = record_at_line(lines, line) else {
                        return Ok(None);
                    };
                    let bad = lines.remove(index);
                    let column = column
                        .map(|c| format!(" (column `{c}`)"))
                        .unwrap_or_default();
                    errors.push(RecordError::new(
                        bad.position,
                        format!(
                            "PostgreSQL refused the row{column}: {}",
                            self.user_facing(&message)
                        ),
                    ));
                }
            }
        }
    }

    /// The slow path, when the insert itself refused a row (a foreign key, say): each row in
    /// its own savepoint, so the bad ones become record errors.
    async fn write_one_by_one(
        &self,
        client: &mut deadpool_postgres::Object,
        columns: &[usize],
        copy: &str,
        lines: Vec<Line>,
        mut outcome: WriteOutcome,
    ) -> Result<WriteOutcome, ConnectorError> {
        let mut tx = client.transaction().await.map_err(|e| self.db.error(&e))?;
        tx.batch_execute(&self.create_stage)
            .await
            .map_err(|e| self.db.error(&e))?;
        for line in lines {
            let row = tx.savepoint("row").await.map_err(|e| self.db.error(&e))?;
            let one = [line];
            let applied = match copy_lines(&row, copy, &one).await {
                Ok(staged) => self.apply(&row, columns, staged).await,
                Err(e) if is_row_error(&e) => Err(NotApplied::RowRefused(e)),
                Err(e) => Err(NotApplied::Failed(self.db.error(&e))),
            };
            match applied {
                Ok(applied) => {
                    row.batch_execute(&format!("TRUNCATE {STAGE}"))
                        .await
                        .map_err(|e| self.db.error(&e))?;
                    row.commit().await.map_err(|e| self.db.error(&e))?;
                    self.account(applied, &one, &mut outcome)?;
                }
                Err(NotApplied::RowRefused(e)) => {
                    row.rollback().await.map_err(|e| self.db.error(&e))?;
                    let message = e
                        .as_db_error()
                        .map(|db| format!("{}{}", db_message(db), unique_columns(db)))
                        .unwrap_or_else(|| e.to_string());
                    outcome.errors.push(RecordError::new(
                        one[0].position,
                        format!("PostgreSQL refused the row: {}", self.user_facing(&message)),
                    ));
                }
                Err(NotApplied::Failed(e)) => return Err(e),
            }
        }
        tx.commit().await.map_err(|e| self.db.error(&e))?;
        Ok(outcome)
    }

    /// Adds what one statement did to the batch's outcome; its conflicts become record
    /// errors of the lines' records.
    fn account(
        &self,
        applied: Applied,
        lines: &[Line],
        outcome: &mut WriteOutcome,
    ) -> Result<(), ConnectorError> {
        outcome.written += applied.written;
        outcome.already_present += applied.already_present;
        outcome.superseded += applied.superseded;
        for (line, message) in applied.conflicts {
            let position = lines.get(line).map(|l| l.position).ok_or_else(|| {
                ConnectorError::transient(format!(
                    "PostgreSQL at {}: a key conflict on staged row {line} of {}",
                    self.db.target,
                    lines.len()
                ))
            })?;
            outcome.errors.push(RecordError::new(position, message));
        }
        Ok(())
    }

    /// `COPY` of the batch's columns into the staging table, each row's line first.
    fn copy_statement(&self, columns: &[usize]) -> String {
        format!(
            "COPY {STAGE} ({LINE}, {}) FROM STDIN (FORMAT csv)",
            self.column_list(columns)
        )
    }

    /// A server message about the staging table, told of the user's table: the staging
    /// table is the sink's own.
    fn user_facing(&self, message: &str) -> String {
        message
            .replace(
                &format!("relation \"{STAGE}\""),
                &format!("table `{}`", self.table),
            )
            .replace(STAGE, &self.table)
    }

    pub(super) fn insert_error(&self, e: &tokio_postgres::Error) -> ConnectorError {
        if e.code() == Some(&SqlState::INVALID_COLUMN_REFERENCE) {
            return ConnectorError::config(format!(
                "PostgreSQL at {}: table `{}` has no unique index on ({}): the sink needs one so that a batch written twice writes its rows once",
                self.db.target, self.table, self.conflict
            ));
        }
        self.db.error(e)
    }
}

/// Streams `lines` as CSV into `COPY`; returns the rows copied.
async fn copy_lines(
    tx: &tokio_postgres::Transaction<'_>,
    copy: &str,
    lines: &[Line],
) -> Result<u64, tokio_postgres::Error> {
    let sink = tx.copy_in(copy).await?;
    futures::pin_mut!(sink);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    for (index, line) in lines.iter().enumerate() {
        buf.put_slice(index.to_string().as_bytes());
        for cell in &line.cells {
            buf.put_u8(b',');
            if let Some(text) = cell {
                // Quoted, so an empty string is not NULL.
                buf.put_u8(b'"');
                for part in text.split_inclusive('"') {
                    buf.put_slice(part.as_bytes());
                    if part.ends_with('"') {
                        buf.put_u8(b'"');
                    }
                }
                buf.put_u8(b'"');
            }
        }
        buf.put_u8(b'\n');
        if buf.len() >= 60 * 1024 {
            sink.send(buf.split().freeze()).await?;
        }
    }
    if !buf.is_empty() {
        sink.send(buf.freeze()).await?;
    }
    sink.finish().await
}

/// The index of the record holding CSV line `line` (from 1): PostgreSQL counts the line ends
/// inside quoted values too.
fn record_at_line(lines: &[Line], line: usize) -> Option<usize> {
    let mut first = 1;
    for (index, record) in lines.iter().enumerate() {
        let breaks: usize = record
            .cells
            .iter()
            .flatten()
            .map(|c| c.bytes().filter(|&b| b == b'\n').count())
            .sum();
        if line < first + breaks + 1 {
            return (line >= first).then_some(index);
        }
        first += breaks + 1;
    }
    None
}

/// For a unique violation, ` on `a`, `b`` from the detail `Key (a, b)=(...)`, without the
/// values; empty otherwise.
fn unique_columns(db: &tokio_postgres::error::DbError) -> String {
    if db.code() != &SqlState::UNIQUE_VIOLATION {
        return String::new();
    }
    let columns = db
        .detail()
        .and_then(|d| d.strip_prefix("Key ("))
        .and_then(|d| d.split_once(")=").map(|(columns, _)| columns));
    match columns {
        Some(columns) => format!(
            " on {}",
            columns
                .split(", ")
                .map(|c| format!("`{}`", c.trim_matches('"')))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => String::new(),
    }
}

/// A row's value refused by the database (SQLSTATE classes 22, data exception, and 23,
/// integrity constraint violation), as opposed to a broken connection or bad SQL.
pub(super) fn is_row_error(e: &tokio_postgres::Error) -> bool {
    e.code()
        .is_some_and(|c| c.code().starts_with("22") || c.code().starts_with("23"))
}

/// For a `COPY` that failed on one row: the row's line (from 1), its column where known and
/// the server's message without the value.
fn refused_row(e: &tokio_postgres::Error) -> Option<(usize, Option<String>, String)> {
    if !is_row_error(e) {
        return None;
    }
    let db = e.as_db_error()?;
    // "COPY batch_orchestra_stage, line 3, column age: \"abc\""
    let context = db.where_()?;
    let after = &context[context.find(", line ")? + 7..];
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    let line = digits.parse().ok()?;
    // "line 3, column age: ..." names the column; "line 3: <the row>" does not, and the row's
    // text is not searched.
    let column = after[digits.len()..]
        .strip_prefix(", column ")
        .and_then(|rest| rest.split_once(':'))
        .map(|(column, _)| column.to_owned())
        .or_else(|| db.column().map(str::to_owned));
    Some((line, column, db_message(db)))
}

/// A JSON value as the text PostgreSQL parses for a column; `None` is `NULL`.
fn cell(value: Value, array_column: bool) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s),
        Value::Array(items) if array_column => {
            let mut out = String::new();
            array_literal(&items, &mut out);
            Some(out)
        }
        other => Some(other.to_string()),
    }
}

/// `{1,"a b",NULL,{2,3}}`: PostgreSQL's array literal for a JSON array.
fn array_literal(items: &[Value], out: &mut String) {
    out.push('{');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match item {
            Value::Null => out.push_str("NULL"),
            Value::Array(inner) => array_literal(inner, out),
            Value::String(s) => quote_element(s, out),
            other => quote_element(&other.to_string(), out),
        }
    }
    out.push('}');
}

fn quote_element(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn copy_lines_map_to_records_across_line_breaks_in_values() {
        let line = |cells: &[&str]| Line {
            position: Position::at(0),
            cells: cells.iter().map(|c| Some((*c).to_owned())).collect(),
        };
        let lines = [line(&["a"]), line(&["b\nc", "d\ne"]), line(&["f"])];
        let found: Vec<_> = (1..=6).map(|n| record_at_line(&lines, n)).collect();
        assert_eq!(found, [Some(0), Some(1), Some(1), Some(1), Some(2), None]);
        assert_eq!(record_at_line(&lines, 0), None);
    }

    #[test]
    fn values_become_the_text_postgres_parses() {
        assert_eq!(cell(json!(null), false), None);
        assert_eq!(cell(json!("a\"b"), false).as_deref(), Some("a\"b"));
        assert_eq!(cell(json!(12.5), false).as_deref(), Some("12.5"));
        assert_eq!(cell(json!(true), false).as_deref(), Some("true"));
        assert_eq!(
            cell(json!({"a": [1]}), false).as_deref(),
            Some("{\"a\":[1]}")
        );
        assert_eq!(cell(json!([1, 2]), false).as_deref(), Some("[1,2]"));
        assert_eq!(
            cell(json!([1, null, "x \"y\"", [2, 3]]), true).as_deref(),
            Some("{\"1\",NULL,\"x \\\"y\\\"\",{\"2\",\"3\"}}")
        );
    }
}
