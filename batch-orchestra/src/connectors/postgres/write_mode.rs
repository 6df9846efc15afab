//! What the PostgreSQL sink does with a staged batch: insert it, or upsert it by version, and
//! account for every staged row that was not written.

use serde::{Deserialize, Serialize};
use tokio_postgres::Transaction;

use super::sink::{LINE, PostgresWriter, STAGE};
use super::{quote_ident, quote_literal};
use crate::error::ConnectorError;

/// What the sink does with a record whose key the table already holds.
///
/// ```
/// use batch_orchestra::connectors::postgres::{PostgresSink, WriteMode};
///
/// let sink = PostgresSink::new("people").key_columns(["id"]).upsert("updated_at");
/// assert_eq!(sink.mode, WriteMode::Upsert { version: "updated_at".into() });
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum WriteMode {
    /// Insert, never overwrite: a stored row holding the record's values is already present,
    /// a different row under the record's key is a key conflict (a record error).
    #[default]
    Append,
    /// Insert, or update the stored row under the record's key when the record's `version`
    /// column is higher than the stored row's (or the stored row has none). A record whose
    /// stored row has a higher version is superseded and not written, so a retried, redriven
    /// or late batch never writes an older version over a newer one; a stored row at the
    /// same version counts as already present when it holds the record's values and is a
    /// version conflict (a record error) when it does not. Of several records with one key
    /// in a batch, the highest version is written (the last in source order among equals).
    /// Needs [`ConflictKey::Columns`](super::ConflictKey::Columns).
    Upsert {
        /// The column that orders versions of a row: an `updated_at` timestamp, a sequence
        /// number, any type PostgreSQL can compare. Every record must fill it.
        version: String,
    },
}

impl WriteMode {
    /// True for the default mode, which the sink's config leaves out of its JSON.
    pub fn is_append(&self) -> bool {
        *self == Self::Append
    }

    /// The version column, for an upsert.
    pub fn version(&self) -> Option<&str> {
        match self {
            Self::Append => None,
            Self::Upsert { version } => Some(version),
        }
    }
}

/// What happened to the staged rows of one statement.
#[derive(Debug, Default)]
pub(super) struct Applied {
    pub written: u64,
    pub already_present: u64,
    pub superseded: u64,
    /// Rows refused for their key: each one's line in the batch and its message.
    pub conflicts: Vec<(usize, String)>,
}

/// Why [`PostgresWriter::apply`] wrote nothing.
pub(super) enum NotApplied {
    /// The server refused a row (a foreign key, say) without the statement saying which:
    /// write the rows one by one.
    RowRefused(tokio_postgres::Error),
    /// Anything else: the batch is not written.
    Failed(ConnectorError),
}

impl From<ConnectorError> for NotApplied {
    fn from(e: ConnectorError) -> Self {
        Self::Failed(e)
    }
}

impl PostgresWriter {
    /// Writes the `staged` rows of the staging table into the table, as the write mode says,
    /// within `tx`. `columns` are the batch's columns (indexes into the table's).
    pub(super) async fn apply(
        &self,
        tx: &Transaction<'_>,
        columns: &[usize],
        staged: u64,
    ) -> Result<Applied, NotApplied> {
        let column_list = self.column_list(columns);
        let refused = |e: tokio_postgres::Error| {
            if super::sink::is_row_error(&e) {
                NotApplied::RowRefused(e)
            } else {
                NotApplied::Failed(self.insert_error(&e))
            }
        };
        match &self.mode {
            WriteMode::Append => {
                let insert = format!(
                    "INSERT INTO {table} ({column_list}) SELECT {column_list} FROM {STAGE} ON CONFLICT ({conflict}) DO NOTHING",
                    table = self.table,
                    conflict = self.conflict
                );
                let written = tx.execute(&insert, &[]).await.map_err(refused)?;
                let conflicts = if written < staged {
                    self.key_conflicts(tx, columns).await?
                } else {
                    Vec::new()
                };
                Ok(Applied {
                    written,
                    already_present: staged - written - conflicts.len() as u64,
                    superseded: 0,
                    conflicts,
                })
            }
            WriteMode::Upsert { version } => {
                let written: Vec<i32> = tx
                    .query(&self.upsert_statement(columns, version), &[])
                    .await
                    .map_err(refused)?
                    .iter()
                    .map(|row| row.get(0))
                    .collect();
                let mut applied = Applied {
                    written: written.len() as u64,
                    ..Applied::default()
                };
                if applied.written < staged {
                    self.versions_not_written(tx, columns, version, &written, &mut applied)
                        .await?;
                }
                applied.already_present =
                    staged - applied.written - applied.superseded - applied.conflicts.len() as u64;
                Ok(applied)
            }
        }
    }

    pub(super) fn column_list(&self, columns: &[usize]) -> String {
        columns
            .iter()
            .map(|&i| quote_ident(&self.columns[i].name))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `a."k" = b."k" AND ...` over the key columns, for tables aliased `a` and `b`.
    fn key_join(&self, a: &str, b: &str) -> String {
        self.key_columns
            .iter()
            .map(|k| format!("{a}.{k} = {b}.{k}", k = quote_ident(k)))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// `ARRAY[...]`: the names of the batch's columns (but `skip`) whose staged value differs
    /// from the stored row's, compared as text (every type prints; not every type has an
    /// equality, `json` for one).
    fn differing_columns(&self, columns: &[usize], skip: &[&str]) -> String {
        let cases: Vec<String> = columns
            .iter()
            .map(|&i| self.columns[i].name.as_str())
            .filter(|name| !self.key_columns.iter().any(|k| k == name) && !skip.contains(name))
            .map(|c| {
                format!(
                    "CASE WHEN s.{q}::text IS DISTINCT FROM t.{q}::text THEN {name} END",
                    q = quote_ident(c),
                    name = quote_literal(c)
                )
            })
            .collect();
        format!("array_remove(ARRAY[{}]::text[], NULL)", cases.join(", "))
    }

    /// The upsert: of each key's staged rows the highest version (the last line among
    /// equals), inserted, or written over a stored row with a lower or no version. Returns
    /// the lines written.
    fn upsert_statement(&self, columns: &[usize], version: &str) -> String {
        let column_list = self.column_list(columns);
        let v = quote_ident(version);
        let keys: Vec<String> = self.key_columns.iter().map(|k| quote_ident(k)).collect();
        let updates = columns
            .iter()
            .map(|&i| quote_ident(&self.columns[i].name))
            .filter(|c| !keys.contains(c))
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "WITH w AS (
                SELECT DISTINCT ON ({keys}) {LINE}, {column_list} FROM {STAGE}
                ORDER BY {keys}, {v} DESC, {LINE} DESC
             ), x AS (
                INSERT INTO {table} AS t ({column_list}) SELECT {column_list} FROM w
                ON CONFLICT ({keys}) DO UPDATE SET {updates}
                WHERE t.{v} IS NULL OR t.{v} < EXCLUDED.{v}
                RETURNING {returning}
             )
             SELECT w.{LINE} FROM w JOIN x ON {returned_join}",
            keys = self.conflict,
            table = self.table,
            returned_join = self.key_join("w", "x"),
            returning = keys
                .iter()
                .map(|k| format!("t.{k}"))
                .collect::<Vec<_>>()
                .join(", "),
        )
    }

    /// Accounts for the staged rows the upsert did not write, against the rows the table
    /// now holds under their keys: a higher stored version supersedes the row; the same
    /// version is the row already present, or a version conflict when the values differ.
    async fn versions_not_written(
        &self,
        tx: &Transaction<'_>,
        columns: &[usize],
        version: &str,
        written: &[i32],
        applied: &mut Applied,
    ) -> Result<(), ConnectorError> {
        let v = quote_ident(version);
        let first_key = quote_ident(&self.key_columns[0]);
        let query = format!(
            "SELECT s.{LINE},
                    CASE WHEN t.{first_key} IS NULL THEN 'gone'
                         WHEN t.{v} > s.{v} THEN 'newer'
                         WHEN t.{v} = s.{v} THEN 'same'
                         ELSE 'older' END,
                    {differs}
             FROM {STAGE} s LEFT JOIN {table} t ON {join}
             WHERE s.{LINE} <> ALL($1)",
            differs = self.differing_columns(columns, &[version]),
            table = self.table,
            join = self.key_join("t", "s"),
        );
        let rows = tx
            .query(&query, &[&written])
            .await
            .map_err(|e| self.db.error(&e))?;
        for row in rows {
            let line: i32 = row.get(0);
            let stored: &str = row.get(1);
            let differs: Vec<String> = row.get(2);
            match stored {
                "newer" => applied.superseded += 1,
                "same" if differs.is_empty() => {}
                "same" => applied.conflicts.push((
                    usize::try_from(line).unwrap_or(usize::MAX),
                    format!(
                        "version conflict: table `{}` already holds a different row under this record's key ({}) at the same version (`{version}`); it differs in {}. Give every change of a row a higher version",
                        self.table,
                        backticked(&self.key_columns),
                        backticked(&differs)
                    ),
                )),
                // The upsert writes over lower versions and inserts missing keys: a row
                // neither written nor held at its version or newer was changed by another
                // writer since. Write the batch again.
                _ => {
                    return Err(ConnectorError::transient(format!(
                        "PostgreSQL at {}: a row of table `{}` changed under a record's key while the batch was written",
                        self.db.target, self.table
                    )));
                }
            }
        }
        Ok(())
    }

    /// The staged rows the insert left out because a different row holds their key: each
    /// one's line in the batch and its record error. Rows whose stored twin holds the same
    /// values are not listed: they are already present. Empty for a position key, which only
    /// the same record at the same position can hold.
    async fn key_conflicts(
        &self,
        tx: &Transaction<'_>,
        columns: &[usize],
    ) -> Result<Vec<(usize, String)>, ConnectorError> {
        if self.key_columns.is_empty() {
            return Ok(Vec::new());
        }
        let query = format!(
            "SELECT line, differs FROM (
                SELECT s.{LINE} AS line, {differs} AS differs
                FROM {STAGE} s JOIN {table} t ON {join}
             ) d WHERE cardinality(differs) > 0",
            differs = self.differing_columns(columns, &[]),
            table = self.table,
            join = self.key_join("t", "s"),
        );
        let rows = tx.query(&query, &[]).await.map_err(|e| self.db.error(&e))?;
        Ok(rows
            .iter()
            .map(|row| {
                let line: i32 = row.get(0);
                let differs: Vec<String> = row.get(1);
                let message = format!(
                    "key conflict: table `{}` already holds a different row under this record's key ({}); it differs in {}. The sink inserts and never overwrites a row: remove the duplicate key from the data, give the record a key of its own, or write in upsert mode",
                    self.table,
                    backticked(&self.key_columns),
                    backticked(&differs)
                );
                (usize::try_from(line).unwrap_or(usize::MAX), message)
            })
            .collect())
    }
}

/// `` `a`, `b` ``.
fn backticked(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
