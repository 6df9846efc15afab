//! The PostgreSQL source: a table or a query read in key order, by keyset pagination.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Database, quote_ident, quote_literal};
use crate::connector::{BatchRange, Bounds, Cursor, Plan, PlannedBatch, ReadBatch, Source, Window};
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
#[crate::batch_source(name = "postgres", reader = PostgresReader, incremental = begin)]
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
    /// For incremental runs: the column the cursor shows (an `updated_at` timestamp, an
    /// increasing id) and a first run or a rerun can start above. See
    /// [`incremental`](Self::incremental).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<String>,
    /// The window an incremental run reads, pinned by its first step; `None` reads every row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<ChangeWindow>,
}

/// The rows an incremental run reads: those whose current version was committed before the
/// `upto` snapshot and either after the `after` snapshot or with the cursor column above
/// `above` (all of them when neither is set). Snapshots are PostgreSQL's `pg_snapshot` text (`xmin:xmax:xip,...`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeWindow {
    /// Rows committed as of this snapshot, taken when the run began.
    pub upto: String,
    /// Rows not yet committed as of this snapshot, the one the last run read up to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Rows whose cursor column is above this value (a first run's starting point or a
    /// rerun's), in PostgreSQL's text form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<String>,
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
            incremental: None,
            window: None,
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

    /// Makes the table readable incrementally (in runs of a sync, see
    /// [`BatchProcessingRequest::incremental`](crate::batch::BatchProcessingRequest::incremental)),
    /// with `column` as the cursor people see: an `updated_at` timestamp or an increasing id.
    ///
    /// Each run reads the rows whose current version was committed after the last run's
    /// snapshot and before its own: changes are found by commit, not by the column's value,
    /// so a transaction that took an earlier `updated_at` but committed after the last run
    /// read (the late commit that a `MAX(updated_at)` cursor misses) is read by the next run,
    /// and an update is read once per run that sees it. Deleted rows are not propagated. A
    /// first run, or a rerun from `{"value": ...}`, reads the rows whose column is above the
    /// value (all rows on a first run without one). Tables only, not queries.
    pub fn incremental(mut self, column: impl Into<String>) -> Self {
        self.incremental = Some(column.into());
        self
    }

    /// Pins one incremental run's window: a snapshot taken now bounds it above, the last
    /// run's snapshot (or a column value) below. A range run is bounded by its cursors'
    /// snapshots instead.
    async fn begin(&self, bounds: Bounds) -> Result<Window<Self>, ConnectorError> {
        let (Relation::Table(table), Some(column)) = (&self.relation, &self.incremental) else {
            return Err(ConnectorError::config(
                "an incremental PostgreSQL source reads a table with a cursor column: write `PostgresSource::table(..).incremental(\"updated_at\")` (`incremental = \"updated_at\"` in a job file)",
            ));
        };
        let snapshot = |c: &Cursor| c.get("snapshot").and_then(Value::as_str).map(str::to_owned);
        let value = |c: &Cursor| match c {
            Value::Object(o) => o.get("value").and_then(cursor_text),
            other => cursor_text(other),
        };
        if let Some(to) = &bounds.to {
            // A range run: the rows whose current version committed between the two
            // snapshots (a row changed again since `to` is read by the run that saw it).
            let upto = snapshot(to).ok_or_else(|| {
                ConnectorError::config(format!(
                    "the end cursor {to} has no `snapshot`: a PostgreSQL range ends at a cursor a run wrote (`schedule describe` shows them)"
                ))
            })?;
            let from = bounds.from.as_ref();
            let after = from.and_then(snapshot);
            let above = from.filter(|c| snapshot(c).is_none()).and_then(value);
            let mut source = self.clone();
            source.window = Some(ChangeWindow { upto, after, above });
            return Ok(Window {
                source,
                next: to.clone(),
            });
        }
        let db = Database::connect(&self.url_env).await?;
        let mut client = db.client().await?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(|e| db.error(&e))?;
        let quoted: String = tx
            .query_one("SELECT $1::text::regclass::text", &[table])
            .await
            .map_err(|e| db.error(&e))?
            .get(0);
        let row = tx
            .query_one(
                &format!(
                    "SELECT pg_current_snapshot()::text, max(r.{})::text FROM {quoted} r",
                    quote_ident(column),
                ),
                &[],
            )
            .await
            .map_err(|e| {
                db.error(&e)
                    .context(format_args!("pinning the window of table `{table}`"))
            })?;
        tx.commit().await.map_err(|e| db.error(&e))?;
        let (upto, max): (String, Option<String>) = (row.get(0), row.get(1));
        // The last run's snapshot bounds what changed since; a rerun's value adds the rows
        // above it. A cursor without a snapshot (written by hand) is read as a value.
        let previous = bounds.previous.as_ref();
        let after = previous.and_then(snapshot);
        let above = bounds
            .from
            .as_ref()
            .and_then(value)
            .or_else(|| previous.filter(|p| snapshot(p).is_none()).and_then(value));
        let value = max.or_else(|| previous.and_then(value));
        let next = serde_json::json!({ "column": column, "value": value, "snapshot": upto });
        let mut source = self.clone();
        source.window = Some(ChangeWindow { upto, after, above });
        Ok(Window { source, next })
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
        let window = match &self.window {
            None => String::new(),
            Some(window) => self.window_filter(&client, &from, window, &db).await?,
        };
        // What changed since the last run is usually a few rows scattered over the table:
        // one scan that keeps them, then a sort, beats walking the key index past every
        // unchanged row (`OFFSET 0` keeps PostgreSQL from merging the two).
        let changes_only = self.window.as_ref().is_some_and(|w| w.after.is_some());
        let keys = |bound: &str| {
            let matching = format!("{from} r WHERE r.{key} IS NOT NULL {bound} {window}");
            let first = if changes_only {
                format!(
                    "SELECT k FROM (SELECT r.{key} AS k FROM {matching} OFFSET 0) m ORDER BY k LIMIT $1"
                )
            } else {
                format!("SELECT r.{key} AS k FROM {matching} ORDER BY r.{key} LIMIT $1")
            };
            format!(
                "SELECT k::text, n, total FROM (
                   SELECT a.k, row_number() OVER (ORDER BY a.k) AS n, count(*) OVER () AS total
                   FROM ({first}) a
                 ) b WHERE n % $2 = 0 OR n = total ORDER BY n"
            )
        };
        let rows = |bound: &str| {
            format!(
                "SELECT r.{key}::text, {row} FROM {from} r
                 WHERE r.{key} <= CAST($1::text AS {key_type}) {bound} {window} ORDER BY r.{key}"
            )
        };
        let reader = PostgresReader {
            plan_first: keys(""),
            plan_after: keys(&format!("AND r.{key} > CAST($3::text AS {key_type})")),
            read_first: rows(""),
            read_after: rows(&format!("AND r.{key} > CAST($2::text AS {key_type})")),
            name,
            windowed: self.window.is_some(),
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

impl PostgresSource {
    /// The `AND ...` that limits a table's rows to `window`. A row's version is placed by the
    /// transaction that wrote it (`xmin`, widened to a 64-bit id next to the window's own
    /// snapshot), so a commit that comes after the window's snapshot falls in the next
    /// window whatever its cursor column holds.
    async fn window_filter(
        &self,
        client: &tokio_postgres::Client,
        from: &str,
        window: &ChangeWindow,
        db: &Database,
    ) -> Result<String, ConnectorError> {
        let (Relation::Table(_), Some(column)) = (&self.relation, &self.incremental) else {
            return Err(ConnectorError::config(
                "a PostgreSQL change window needs a table and its `incremental` column",
            ));
        };
        let xmax: u64 = window
            .upto
            .split(':')
            .nth(1)
            .and_then(|x| x.parse().ok())
            .ok_or_else(|| {
                ConnectorError::config(format!(
                    "the window's snapshot `{}` is not a PostgreSQL snapshot",
                    window.upto
                ))
            })?;
        // The row's 32-bit xmin widened next to the snapshot's xmax: `behind` is how many
        // ids before xmax it lies, modulo 2^32. Up to 2^31 behind: that far in the past;
        // within 2^30 ahead (the last quarter): written after the snapshot; in between: older
        // than any snapshot can tell apart (frozen long ago), so visible in all of them.
        let behind = format!(
            "(({low} - r.xmin::text::bigint + 4294967296) % 4294967296)",
            low = xmax & 0xFFFF_FFFF
        );
        let xid = format!(
            "(CASE WHEN {behind} < 2147483648 THEN GREATEST({xmax} - {behind}, 1)
                   WHEN {behind} >= 3221225472 THEN {xmax} + 4294967296 - {behind}
                   ELSE 1 END)::text::xid8"
        );
        let visible_upto = format!(
            "pg_visible_in_snapshot({xid}, {}::pg_snapshot)",
            quote_literal(&window.upto)
        );
        let mut since = Vec::new();
        if let Some(after) = &window.after {
            // A row the last snapshot does not see was written at or after its xmin: within
            // `newer` ids of this snapshot's xmax. Tested first, on the 32-bit id, it passes
            // over the unchanged rows without widening their ids (a third of the cost).
            let newer = after
                .split(':')
                .next()
                .and_then(|x| x.parse::<u64>().ok())
                .and_then(|after_xmin| xmax.checked_sub(after_xmin))
                .filter(|d| *d < 1 << 31);
            let recent = newer.map_or(String::new(), |d| format!("{behind} <= {d} AND "));
            since.push(format!(
                "({recent}NOT pg_visible_in_snapshot({xid}, {}::pg_snapshot) AND {visible_upto})",
                quote_literal(after)
            ));
        }
        if let Some(above) = &window.above {
            let column_type = column_type(client, from, column, db).await?;
            since.push(format!(
                "(r.{} > CAST({} AS {column_type}) AND {visible_upto})",
                quote_ident(column),
                quote_literal(above)
            ));
        }
        // One expression, so PostgreSQL tests its parts in the order written.
        let filter = if since.is_empty() {
            format!("AND {visible_upto}")
        } else {
            format!("AND ({})", since.join(" OR "))
        };
        Ok(filter)
    }
}

/// The SQL type of `column` in `from`.
async fn column_type(
    client: &tokio_postgres::Client,
    from: &str,
    column: &str,
    db: &Database,
) -> Result<String, ConnectorError> {
    let probe = client
        .prepare(&format!(
            "SELECT r.{} FROM {from} r LIMIT 0",
            quote_ident(column)
        ))
        .await
        .map_err(|e| {
            db.error(&e)
                .context(format_args!("reading column `{column}`"))
        })?;
    Ok(client
        .query_one(
            "SELECT format_type($1::oid, NULL)",
            &[&probe.columns()[0].type_().oid()],
        )
        .await
        .map_err(|e| db.error(&e))?
        .get(0))
}

/// A cursor value in PostgreSQL's text form: a string as it is, a number as written.
fn cursor_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
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
    /// Reads an incremental run's window: a row updated since the window was pinned has
    /// left it (its new version is the next run's), so a batch may hold fewer rows than
    /// planned.
    windowed: bool,
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
        let shrank = self.windowed && (rows.len() as u64) < range.records;
        if rows.len() as u64 != range.records && !shrank {
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
