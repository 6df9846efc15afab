//! The PostgreSQL source: a table or a query read in key order, by keyset pagination.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Database, quote_ident, quote_literal};
use crate::connector::{BatchRange, Plan, PlannedBatch, ReadBatch, Source};
use crate::error::ConnectorError;
use crate::record::{Position, Positioned};

/// The most keys one plan call scans, whatever the batch size and plan-ahead ask.
const MAX_PLAN_ROWS: u64 = 1_000_000;

/// What the source reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Relation {
    /// A table or view, optionally schema-qualified, as SQL would name it.
    Table(String),
    /// A `SELECT` whose rows are read; it must return the key column.
    Query(String),
}

/// Where a PostgreSQL source resumes: after the row with this key (the key in PostgreSQL's
/// text form), or at the start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyOffset {
    /// The key of the last row before this position; `None` before the first row.
    pub after: Option<String>,
}

/// A PostgreSQL table or query as a source of rows (JSON objects of column values), read in
/// the order of a key column with keyset pagination (`WHERE key > $last ORDER BY key`).
///
/// The key must be unique and not null (a primary key, a serial, a unique timestamp), and
/// should be indexed: each batch is the range of keys after the previous batch's last key, so
/// a job resumes exactly where it was, reads each row once, and never counts with `OFFSET`.
/// Planning returns many batch boundaries per call, as the CSV source does. Rows whose key is
/// `NULL` are not read. Positions are record ordinals in key order.
///
/// PostgreSQL writes each row as JSON (`to_json`): numbers as JSON numbers, timestamps as ISO
/// 8601 strings, arrays as arrays, `json` columns as they are. `numeric` values wider than a
/// 64-bit float lose precision in [`serde_json::Value`]; cast them to `text` in a query to keep
/// every digit.
///
/// ```
/// use batch_orchestra::connectors::postgres::PostgresSource;
///
/// let people = PostgresSource::table("public.people", "id").columns(["id", "name"]);
/// let recent = PostgresSource::query("SELECT * FROM orders WHERE placed > '2026-01-01'", "order_id")
///     .url_env("SHOP_DATABASE_URL");
/// assert_eq!(recent.key, "order_id");
/// ```
#[crate::batch_source(name = "postgres", reader = PostgresReader)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostgresSource {
    /// The environment variable holding the connection string, read by the worker.
    pub url_env: String,
    /// The table or query.
    pub relation: Relation,
    /// The unique, not-null column rows are read in the order of.
    pub key: String,
    /// The columns to read; all of them when empty.
    #[serde(default)]
    pub columns: Vec<String>,
}

impl PostgresSource {
    /// Reads the table `table` in the order of its column `key`, with the connection string
    /// from `DATABASE_URL`.
    pub fn table(table: impl Into<String>, key: impl Into<String>) -> Self {
        Self::new(Relation::Table(table.into()), key.into())
    }

    /// Reads the rows of the query `sql` in the order of its column `key`.
    pub fn query(sql: impl Into<String>, key: impl Into<String>) -> Self {
        Self::new(Relation::Query(sql.into()), key.into())
    }

    fn new(relation: Relation, key: String) -> Self {
        Self {
            url_env: "DATABASE_URL".into(),
            relation,
            key,
            columns: Vec::new(),
        }
    }

    /// Reads the connection string from another environment variable.
    pub fn url_env(mut self, name: impl Into<String>) -> Self {
        self.url_env = name.into();
        self
    }

    /// Reads only these columns.
    pub fn columns<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.columns = columns.into_iter().map(Into::into).collect();
        self
    }

    async fn build_source(&self) -> Result<PostgresReader, ConnectorError> {
        let db = Database::connect(&self.url_env).await?;
        let client = db.client().await?;
        let (from, name) = match &self.relation {
            Relation::Table(table) => {
                let quoted: String = client
                    .query_one("SELECT $1::text::regclass::text", &[table])
                    .await
                    .map_err(|e| db.error(&e))?
                    .get(0);
                (quoted, format!("table `{table}`"))
            }
            // On lines of their own, so a trailing `--` comment ends before the parenthesis.
            Relation::Query(sql) => (
                format!("(\n{}\n)", sql.trim().trim_end_matches(';')),
                "the source's query".to_owned(),
            ),
        };
        let key = quote_ident(&self.key);
        // The key's type, so that a key in text form compares as the key does.
        let probe = client
            .prepare(&format!("SELECT r.{key} FROM {from} r LIMIT 0"))
            .await
            .map_err(|e| {
                db.error(&e)
                    .context(format_args!("reading {name} by key `{}`", self.key))
            })?;
        let key_type: String = client
            .query_one(
                "SELECT format_type($1::oid, NULL)",
                &[&probe.columns()[0].type_().oid()],
            )
            .await
            .map_err(|e| db.error(&e))?
            .get(0);
        let row = if self.columns.is_empty() {
            "to_json(r)".to_owned()
        } else {
            let fields = self
                .columns
                .iter()
                .map(|c| format!("{}, r.{}", quote_literal(c), quote_ident(c)))
                .collect::<Vec<_>>()
                .join(", ");
            format!("json_build_object({fields})")
        };
        let keys = |bound: &str| {
            format!(
                "SELECT k::text, n, total FROM (
                   SELECT a.k, row_number() OVER (ORDER BY a.k) AS n, count(*) OVER () AS total
                   FROM (SELECT r.{key} AS k FROM {from} r WHERE r.{key} IS NOT NULL {bound}
                         ORDER BY r.{key} LIMIT $1) a
                 ) b WHERE n % $2 = 0 OR n = total ORDER BY n"
            )
        };
        let rows = |bound: &str| {
            format!(
                "SELECT r.{key}::text, {row} FROM {from} r
                 WHERE r.{key} <= CAST($1::text AS {key_type}) {bound} ORDER BY r.{key}"
            )
        };
        let reader = PostgresReader {
            plan_first: keys(""),
            plan_after: keys(&format!("AND r.{key} > CAST($3::text AS {key_type})")),
            read_first: rows(""),
            read_after: rows(&format!("AND r.{key} > CAST($2::text AS {key_type})")),
            name,
            db,
        };
        // Bad column names in `columns` show now, not at the first batch.
        client
            .prepare(&reader.read_first)
            .await
            .map_err(|e| reader.db.error(&e))?;
        Ok(reader)
    }
}

/// A built PostgreSQL source: a pool and its statements.
pub struct PostgresReader {
    db: Database,
    /// The relation, for messages.
    name: String,
    plan_first: String,
    plan_after: String,
    read_first: String,
    read_after: String,
}

impl Source for PostgresReader {
    type Record = Value;
    type Offset = KeyOffset;

    async fn plan(
        &self,
        from: Option<&KeyOffset>,
        batch_size: u64,
        max_batches: usize,
    ) -> Result<Plan<KeyOffset>, ConnectorError> {
        let batch_size = batch_size.max(1);
        let limit = batch_size
            .saturating_mul(max_batches.max(1) as u64)
            .min(MAX_PLAN_ROWS.max(batch_size));
        let (limit, size) = (limit as i64, batch_size as i64);
        let client = self.db.client().await?;
        let after = from.and_then(|f| f.after.as_ref());
        let rows = match after {
            None => {
                let statement = client
                    .prepare_cached(&self.plan_first)
                    .await
                    .map_err(|e| self.db.error(&e))?;
                client.query(&statement, &[&limit, &size]).await
            }
            Some(key) => {
                let statement = client
                    .prepare_cached(&self.plan_after)
                    .await
                    .map_err(|e| self.db.error(&e))?;
                client.query(&statement, &[&limit, &size, key]).await
            }
        }
        .map_err(|e| self.db.error(&e))?;
        let mut batches = Vec::with_capacity(rows.len());
        let mut start = KeyOffset {
            after: after.cloned(),
        };
        let (mut seen, mut total) = (0i64, 0i64);
        for row in &rows {
            let key: String = row.get(0);
            let n: i64 = row.get(1);
            total = row.get(2);
            let end = KeyOffset { after: Some(key) };
            batches.push(PlannedBatch {
                start,
                end: end.clone(),
                records: (n - seen) as u64,
            });
            seen = n;
            start = end;
        }
        Ok(Plan {
            batches,
            end_of_source: total < limit,
        })
    }

    async fn read(
        &self,
        range: &BatchRange<KeyOffset>,
    ) -> Result<ReadBatch<Value>, ConnectorError> {
        let Some(last) = &range.end.after else {
            return Ok(ReadBatch::default());
        };
        let client = self.db.client().await?;
        let rows = match &range.start.after {
            None => {
                let statement = client
                    .prepare_cached(&self.read_first)
                    .await
                    .map_err(|e| self.db.error(&e))?;
                client.query(&statement, &[last]).await
            }
            Some(first) => {
                let statement = client
                    .prepare_cached(&self.read_after)
                    .await
                    .map_err(|e| self.db.error(&e))?;
                client.query(&statement, &[last, first]).await
            }
        }
        .map_err(|e| self.db.error(&e))?;
        if rows.len() as u64 != range.records {
            return Err(ConnectorError::batch(format!(
                "PostgreSQL {}: keys after {} up to {last} now hold {} rows where the plan counted {}: rows were added or removed after planning",
                self.name,
                range.start.after.as_deref().unwrap_or("the start"),
                rows.len(),
                range.records
            )));
        }
        let records = rows
            .iter()
            .enumerate()
            .map(|(i, row)| Positioned {
                position: Position::at(range.first_record + i as u64),
                value: row.get(1),
            })
            .collect();
        Ok(ReadBatch {
            records,
            errors: Vec::new(),
        })
    }
}
