//! Upserts: each document replaces the one with its `_id`, or is inserted; with a version
//! field, only over a lower version.
//!
//! A batch is decided against the stored documents, looked up with one query: of several
//! records with one `_id`, one wins (the highest version, or the last in source order); a
//! stored document equal to the winner is already present, one with a higher version
//! supersedes it. Winners whose `_id` is not stored are inserted with one unordered
//! `insert_many`; winners that change a stored document are written with one `update`
//! command whose statements each replace the document only while it still holds the version
//! (or the values) the lookup saw. A statement refused or matching nothing (the document
//! changed since the lookup) is decided again on its own, by the server's comparison. Records
//! that lost to another of their `_id` are decided against that winner once its fate is known.

use std::cmp::Ordering;
use std::collections::HashMap;

use mongodb::bson::{Bson, Document, doc};
use mongodb::error::{ErrorKind, WriteFailure};

use super::{MongoWriter, Refusal, classify, differing_fields, id_key, id_of};
use crate::Position;
use crate::connector::WriteOutcome;
use crate::error::{ConnectorError, RecordError};

/// Statements in one `update` command, at most (the server takes up to 100,000).
const MAX_STATEMENTS: usize = 10_000;
/// Bytes of documents in one `update` command, at most (a command is up to 16 MiB).
const MAX_COMMAND_BYTES: usize = 8 * 1024 * 1024;

/// What becomes of one upserted document.
enum Upserted {
    Written,
    AlreadyPresent,
    Superseded,
    Refused(RecordError),
}

impl MongoWriter {
    /// Upserts `docs` (with their `_id`s) as the module says.
    pub(super) async fn upsert(
        &self,
        docs: Vec<Document>,
        positions: &[Position],
        mut outcome: WriteOutcome,
    ) -> Result<WriteOutcome, ConnectorError> {
        let field = self.version_field.as_deref();
        let mut fates: Vec<Option<Upserted>> = docs.iter().map(|_| None).collect();
        // Each `_id`'s winner, by index, and the records that lost to one.
        let mut winners: HashMap<String, usize> = HashMap::new();
        let mut losers = Vec::new();
        for (i, doc) in docs.iter().enumerate() {
            if let Some(field) = field
                && matches!(doc.get(field), None | Some(Bson::Null))
            {
                fates[i] = Some(Upserted::Refused(RecordError::new(
                    positions[i],
                    format!("the version field `{field}` is missing or null"),
                )));
                continue;
            }
            let Some(&held) = winners.get(&id_key(doc)) else {
                winners.insert(id_key(doc), i);
                continue;
            };
            // Of two records with one `_id`, the later wins unless its version is lower.
            match field.map(|f| versions(&docs[i], &docs[held], f)) {
                Some(Some(Ordering::Less)) => losers.push(i),
                Some(None) => {
                    fates[i] = Some(incomparable(positions[i], field.unwrap_or_default()));
                }
                _ => {
                    winners.insert(id_key(doc), i);
                    losers.push(held);
                }
            }
        }
        let stored = self
            .stored_by_id(winners.values().map(|&i| &docs[i]))
            .await?;
        let (mut inserts, mut replaces) = (Vec::new(), Vec::new());
        for &i in winners.values() {
            let doc = &docs[i];
            match stored.get(&id_key(doc)) {
                None => inserts.push(i),
                Some(twin) => match self.against_stored(doc, twin, field, positions[i]) {
                    Ok(()) => replaces.push((i, twin)),
                    Err(fate) => fates[i] = Some(fate),
                },
            }
        }
        inserts.sort_unstable();
        replaces.sort_unstable_by_key(|(i, _)| *i);
        for (i, fate) in self.insert_new(&docs, &inserts, positions).await? {
            fates[i] = Some(fate);
        }
        for (i, fate) in self.replace_stored(&docs, &replaces, positions).await? {
            fates[i] = Some(fate);
        }
        // Each loser against its `_id`'s final winner, once that one's fate is known.
        for loser in losers {
            let winner = winners[&id_key(&docs[loser])];
            fates[loser] = Some(match &fates[winner] {
                Some(Upserted::Refused(_)) => Upserted::Refused(RecordError::new(
                    positions[loser],
                    format!(
                        "not written: the record that supersedes it in the batch (record {}, same `_id`) was refused",
                        positions[winner].record
                    ),
                )),
                // The stored document is newer than the winner, so than this one.
                Some(Upserted::Superseded) => Upserted::Superseded,
                _ => self.beside(&docs[loser], &docs[winner], field, positions[loser]),
            });
        }
        for fate in fates {
            match fate {
                Some(Upserted::Written) => outcome.written += 1,
                Some(Upserted::AlreadyPresent) => outcome.already_present += 1,
                Some(Upserted::Superseded) => outcome.superseded += 1,
                Some(Upserted::Refused(e)) => outcome.errors.push(e),
                None => {
                    return Err(ConnectorError::transient(format!(
                        "MongoDB at {}: an upserted document was left undecided",
                        self.target
                    )));
                }
            }
        }
        Ok(outcome)
    }

    /// A record beside the winner of its `_id` in the same batch.
    fn beside(
        &self,
        doc: &Document,
        winner: &Document,
        field: Option<&str>,
        position: Position,
    ) -> Upserted {
        match field {
            None if doc == winner => Upserted::AlreadyPresent,
            // Without versions the later record wins, and this one is overwritten.
            None => Upserted::Superseded,
            Some(field) => match versions(doc, winner, field) {
                Some(Ordering::Less) => Upserted::Superseded,
                Some(_) if doc == winner => Upserted::AlreadyPresent,
                Some(_) => version_conflict(doc, winner, field, position),
                None => incomparable(position, field),
            },
        }
    }

    /// A winner against the document stored under its `_id`: `Ok` when it replaces it,
    /// else what becomes of it.
    fn against_stored(
        &self,
        doc: &Document,
        stored: &Document,
        field: Option<&str>,
        position: Position,
    ) -> Result<(), Upserted> {
        if doc == stored {
            return Err(Upserted::AlreadyPresent);
        }
        let Some(field) = field else {
            return Ok(());
        };
        if matches!(stored.get(field), None | Some(Bson::Null)) {
            return Ok(());
        }
        match versions(doc, stored, field) {
            Some(Ordering::Greater) => Ok(()),
            Some(Ordering::Less) => Err(Upserted::Superseded),
            Some(Ordering::Equal) => Err(version_conflict(doc, stored, field, position)),
            None => Err(incomparable(position, field)),
        }
    }

    /// Inserts the winners at `indices`, whose `_id`s were not stored, with one unordered
    /// `insert_many`; one taken since is decided again on its own.
    async fn insert_new(
        &self,
        docs: &[Document],
        indices: &[usize],
        positions: &[Position],
    ) -> Result<Vec<(usize, Upserted)>, ConnectorError> {
        if indices.is_empty() {
            return Ok(Vec::new());
        }
        let mut refused: HashMap<usize, Refusal> = HashMap::new();
        let batch = indices.iter().map(|&i| &docs[i]);
        if let Err(e) = self.collection.insert_many(batch).ordered(false).await {
            match &*e.kind {
                ErrorKind::InsertMany(failure) if failure.write_concern_error.is_none() => {
                    for err in failure.write_errors.as_deref().unwrap_or_default() {
                        refused.insert(err.index, Refusal::of(err.code, &err.message));
                    }
                }
                _ => return Err(classify(&self.target, &e)),
            }
        }
        let field = self.version_field.as_deref();
        let mut fates = Vec::with_capacity(indices.len());
        for (n, &i) in indices.iter().enumerate() {
            let fate = match refused.remove(&n) {
                None => Upserted::Written,
                Some(Refusal::SameId) => self.replace(&docs[i], field, positions[i]).await?,
                Some(refusal) => Upserted::Refused(refusal.record_error(positions[i])),
            };
            fates.push((i, fate));
        }
        Ok(fates)
    }

    /// Replaces the stored documents of the winners in `replaces` (each with the document the
    /// lookup found) with `update` commands: each statement matches the `_id` only while it
    /// still holds the version the lookup saw (or, without a version field, the values), so
    /// a document changed since is left alone and decided again on its own.
    async fn replace_stored(
        &self,
        docs: &[Document],
        replaces: &[(usize, &Document)],
        positions: &[Position],
    ) -> Result<Vec<(usize, Upserted)>, ConnectorError> {
        let field = self.version_field.as_deref();
        let mut fates = Vec::with_capacity(replaces.len());
        // Commands stay well under the server's 16 MiB message and its statement limit.
        let mut start = 0;
        while start < replaces.len() {
            let (mut end, mut bytes) = (start, 0usize);
            while end < replaces.len() && end - start < MAX_STATEMENTS {
                let size = mongodb::bson::to_vec(&docs[replaces[end].0]).map_or(0, |b| b.len());
                if end > start && bytes + size > MAX_COMMAND_BYTES {
                    break;
                }
                bytes += size;
                end += 1;
            }
            let chunk = &replaces[start..end];
            let statements: Vec<Document> = chunk
                .iter()
                .map(|&(i, stored)| doc! { "q": guard(stored, field), "u": docs[i].clone() })
                .collect();
            let (matched, mut refused) = self.update(statements).await?;
            for (n, &(i, _)) in chunk.iter().enumerate() {
                let fate = match (refused.remove(&n), matched) {
                    // Some statement matched nothing (its document changed since the
                    // lookup) and the server does not say which: each again on its own.
                    (Some(Refusal::SameId), _) | (None, None) => {
                        self.replace(&docs[i], field, positions[i]).await?
                    }
                    (None, Some(())) => Upserted::Written,
                    (Some(refusal), _) => Upserted::Refused(refusal.record_error(positions[i])),
                };
                fates.push((i, fate));
            }
            start = end;
        }
        Ok(fates)
    }

    /// One `update` command of `statements` (no upserts). Returns whether every statement
    /// that was not refused matched a document (`Some(())`; `None` when some matched none,
    /// so the caller cannot tell which), and the refusals by statement index.
    async fn update(
        &self,
        statements: Vec<Document>,
    ) -> Result<(Option<()>, HashMap<usize, Refusal>), ConnectorError> {
        let count = statements.len() as i64;
        let mut command = doc! {
            "update": self.collection.name(),
            "updates": statements,
            "ordered": false,
        };
        if let Some(concern) = self.write_concern() {
            command.insert("writeConcern", concern);
        }
        let reply = self
            .database
            .run_command(command)
            .await
            .map_err(|e| classify(&self.target, &e))?;
        if let Ok(concern) = reply.get_document("writeConcernError") {
            return Err(ConnectorError::transient(format!(
                "MongoDB at {}: the write concern failed: {}",
                self.target,
                concern.get_str("errmsg").unwrap_or("no message")
            )));
        }
        let mut refused = HashMap::new();
        if let Ok(errors) = reply.get_array("writeErrors") {
            for error in errors.iter().filter_map(Bson::as_document) {
                let index = number(error.get("index")).unwrap_or(-1);
                let code = number(error.get("code")).unwrap_or(0);
                let message = error.get_str("errmsg").unwrap_or_default();
                refused.insert(
                    usize::try_from(index).unwrap_or(usize::MAX),
                    Refusal::of(i32::try_from(code).unwrap_or(0), message),
                );
            }
        }
        let matched = number(reply.get("n")).unwrap_or(-1);
        let all = (matched == count - refused.len() as i64).then_some(());
        Ok((all, refused))
    }

    /// The collection's write concern as a command's `writeConcern` field.
    fn write_concern(&self) -> Option<Document> {
        let concern = self.collection.write_concern()?;
        let mut out = Document::new();
        if let Some(w) = &concern.w {
            out.insert("w", mongodb::bson::to_bson(w).ok()?);
        }
        if let Some(j) = concern.journal {
            out.insert("j", j);
        }
        if let Some(timeout) = concern.w_timeout {
            out.insert(
                "wtimeout",
                i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX),
            );
        }
        (!out.is_empty()).then_some(out)
    }

    /// Replaces (or inserts) the document with `doc`'s `_id` on its own; with a version
    /// field, only over a lower version, the server deciding.
    async fn replace(
        &self,
        doc: &Document,
        field: Option<&str>,
        position: Position,
    ) -> Result<Upserted, ConnectorError> {
        let filter = replace_filter(doc, field);
        // Without versions, a concurrent upsert of the same new `_id` can win the insert:
        // then the document exists and a second try replaces it.
        for _ in 0..2 {
            match self
                .collection
                .replace_one(filter.clone(), doc)
                .upsert(true)
                .await
            {
                Ok(r) if r.upserted_id.is_some() || r.matched_count > 0 => {
                    return Ok(Upserted::Written);
                }
                Ok(_) => break,
                Err(e) => match refusal(&e) {
                    Some(Refusal::SameId) => match field {
                        // The `_id` is held at this version or a newer one.
                        Some(field) => return self.held_version(doc, field, position).await,
                        None => continue,
                    },
                    Some(refusal) => return Ok(Upserted::Refused(refusal.record_error(position))),
                    None => return Err(classify(&self.target, &e)),
                },
            }
        }
        Err(ConnectorError::transient(format!(
            "MongoDB at {}: a document was neither replaced nor inserted by an upsert",
            self.target
        )))
    }

    /// The stored document under `doc`'s `_id` did not take `doc`: newer, the same, or a
    /// different document at the same version.
    async fn held_version(
        &self,
        doc: &Document,
        field: &str,
        position: Position,
    ) -> Result<Upserted, ConnectorError> {
        let Some(stored) = self
            .collection
            .find_one(doc! { "_id": id_of(doc) })
            .await
            .map_err(|e| classify(&self.target, &e))?
        else {
            return Err(ConnectorError::transient(format!(
                "MongoDB at {}: a document refused for a duplicate `_id` is no longer there",
                self.target
            )));
        };
        Ok(
            match self.against_stored(doc, &stored, Some(field), position) {
                Err(fate) => fate,
                // Lower or none now: it changed again since; the batch is written again.
                Ok(_) => {
                    return Err(ConnectorError::transient(format!(
                        "MongoDB at {}: a document changed under its `_id` while the batch was written",
                        self.target
                    )));
                }
            },
        )
    }
}

/// How `doc`'s version compares with `other`'s; `None` when they cannot be ordered (values
/// of different kinds).
fn versions(doc: &Document, other: &Document, field: &str) -> Option<Ordering> {
    compare(doc.get(field)?, other.get(field)?)
}

/// Orders two version values: numbers with numbers, strings with strings, dates with dates.
fn compare(a: &Bson, b: &Bson) -> Option<Ordering> {
    fn number(v: &Bson) -> Option<f64> {
        match v {
            Bson::Int32(n) => Some(f64::from(*n)),
            Bson::Int64(n) => Some(*n as f64),
            Bson::Double(n) => Some(*n),
            _ => None,
        }
    }
    match (a, b) {
        (Bson::Int64(x), Bson::Int64(y)) => Some(x.cmp(y)),
        (Bson::String(x), Bson::String(y)) => Some(x.cmp(y)),
        (Bson::DateTime(x), Bson::DateTime(y)) => Some(x.cmp(y)),
        (Bson::Timestamp(x), Bson::Timestamp(y)) => {
            Some((x.time, x.increment).cmp(&(y.time, y.increment)))
        }
        (Bson::ObjectId(x), Bson::ObjectId(y)) => Some(x.cmp(y)),
        _ => number(a)?.partial_cmp(&number(b)?),
    }
}

fn version_conflict(doc: &Document, other: &Document, field: &str, position: Position) -> Upserted {
    Upserted::Refused(RecordError::new(
        position,
        format!(
            "version conflict: a different document with this record's `_id` has the same version (`{field}`); it differs in {}. Give every change of a document a higher version",
            differing_fields(doc, other)
        ),
    ))
}

fn incomparable(position: Position, field: &str) -> Upserted {
    Upserted::Refused(RecordError::new(
        position,
        format!(
            "the version field `{field}` cannot be ordered against the stored or batched document's: they are values of different kinds"
        ),
    ))
}

/// The document a record may replace: the one with its `_id`, with a version field only at a
/// lower version or none.
fn replace_filter(doc: &Document, field: Option<&str>) -> Document {
    let mut filter = doc! { "_id": id_of(doc) };
    if let Some(field) = field {
        let version = doc.get(field).cloned().unwrap_or(Bson::Null);
        filter.insert(
            "$or",
            vec![
                Bson::Document(doc! { field: { "$lt": version } }),
                Bson::Document(doc! { field: Bson::Null }),
            ],
        );
    }
    filter
}

/// The filter of a replace of `stored`: its `_id`, and its version (or, without a version
/// field, its values) as the lookup saw them.
fn guard(stored: &Document, field: Option<&str>) -> Document {
    match field {
        Some(field) => {
            let mut filter = doc! { "_id": id_of(stored) };
            filter.insert(field, stored.get(field).cloned().unwrap_or(Bson::Null));
            filter
        }
        None => stored.clone(),
    }
}

/// A number of a server reply, whatever its BSON type.
fn number(value: Option<&Bson>) -> Option<i64> {
    match value? {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        Bson::Double(n) => Some(*n as i64),
        _ => None,
    }
}

/// The server's refusal of one document, when the error is one.
fn refusal(e: &mongodb::error::Error) -> Option<Refusal> {
    match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(Refusal::of(w.code, &w.message)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_within_a_kind_only() {
        assert_eq!(
            compare(&Bson::Int32(2), &Bson::Int64(3)),
            Some(Ordering::Less)
        );
        assert_eq!(
            compare(&Bson::Double(2.5), &Bson::Int32(2)),
            Some(Ordering::Greater)
        );
        assert_eq!(
            compare(
                &Bson::String("2026-02".into()),
                &Bson::String("2026-01".into())
            ),
            Some(Ordering::Greater)
        );
        assert_eq!(compare(&Bson::String("2".into()), &Bson::Int32(2)), None);
    }
}
