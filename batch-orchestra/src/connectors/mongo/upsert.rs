//! Upserts: each document replaces the one with its `_id`, or is inserted; with a version
//! field, only over a lower version.

use mongodb::bson::{Bson, Document, doc};
use mongodb::error::{ErrorKind, WriteFailure};

use super::{MongoWriter, Refusal, classify, differing_fields, id_key};
use crate::Position;
use crate::connector::WriteOutcome;
use crate::error::{ConnectorError, RecordError};

/// What became of one upserted document.
enum Upserted {
    Written,
    AlreadyPresent,
    Superseded,
    Refused(RecordError),
}

impl MongoWriter {
    /// Upserts `docs` in order, so that without a version field the last of one `_id` wins.
    pub(super) async fn upsert(
        &self,
        docs: Vec<Document>,
        positions: &[Position],
        mut outcome: WriteOutcome,
    ) -> Result<WriteOutcome, ConnectorError> {
        // Without versions, a stored document equal to the record's is already present:
        // looked up first, because servers differ in what an unchanged replace reports.
        let mut stored = match self.version_field {
            Some(_) => Default::default(),
            None => self.stored_by_id(docs.iter()).await?,
        };
        for (doc, &position) in docs.iter().zip(positions) {
            let upserted = match &self.version_field {
                Some(field) => self.upsert_versioned(doc, field, position).await?,
                None if stored.get(&id_key(doc)) == Some(doc) => Upserted::AlreadyPresent,
                None => {
                    let replaced = self.replace(doc, position).await?;
                    if let Upserted::Written = replaced {
                        stored.insert(id_key(doc), doc.clone());
                    }
                    replaced
                }
            };
            match upserted {
                Upserted::Written => outcome.written += 1,
                Upserted::AlreadyPresent => outcome.already_present += 1,
                Upserted::Superseded => outcome.superseded += 1,
                Upserted::Refused(e) => outcome.errors.push(e),
            }
        }
        Ok(outcome)
    }

    /// Replaces or inserts the document with `doc`'s `_id`: the last write wins.
    async fn replace(
        &self,
        doc: &Document,
        position: Position,
    ) -> Result<Upserted, ConnectorError> {
        let filter = doc! { "_id": id_of(doc) };
        // A concurrent upsert of the same new `_id` can win the insert: then the document
        // exists and a second try replaces it.
        for _ in 0..2 {
            match self
                .collection
                .replace_one(filter.clone(), doc)
                .upsert(true)
                .await
            {
                Ok(r) if r.upserted_id.is_some() || r.modified_count > 0 => {
                    return Ok(Upserted::Written);
                }
                Ok(r) if r.matched_count > 0 => return Ok(Upserted::AlreadyPresent),
                Ok(_) => break,
                Err(e) => match refusal(&e) {
                    Some(Refusal::SameId) => continue,
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

    /// Replaces the document with `doc`'s `_id` when its `field` is lower than `doc`'s (or
    /// missing), or inserts it; otherwise tells a newer stored version from the same one.
    async fn upsert_versioned(
        &self,
        doc: &Document,
        field: &str,
        position: Position,
    ) -> Result<Upserted, ConnectorError> {
        let version = match doc.get(field) {
            None | Some(Bson::Null) => {
                return Ok(Upserted::Refused(RecordError::new(
                    position,
                    format!("the version field `{field}` is missing or null"),
                )));
            }
            Some(v) => v.clone(),
        };
        let id = id_of(doc);
        let filter = doc! {
            "_id": id.clone(),
            "$or": [ { field: { "$lt": version.clone() } }, { field: Bson::Null } ],
        };
        match self.collection.replace_one(filter, doc).upsert(true).await {
            Ok(r) if r.upserted_id.is_some() || r.matched_count > 0 => Ok(Upserted::Written),
            Ok(_) => Err(ConnectorError::transient(format!(
                "MongoDB at {}: a document was neither replaced nor inserted by an upsert",
                self.target
            ))),
            Err(e) => match refusal(&e) {
                // The `_id` is held at this version or a newer one (or another type).
                Some(Refusal::SameId) => self.held_version(doc, field, &version, position).await,
                Some(refusal) => Ok(Upserted::Refused(refusal.record_error(position))),
                None => Err(classify(&self.target, &e)),
            },
        }
    }

    /// The stored document under `doc`'s `_id` did not take `doc`: say whether it is newer,
    /// the same, or a different document at the same version.
    async fn held_version(
        &self,
        doc: &Document,
        field: &str,
        version: &Bson,
        position: Position,
    ) -> Result<Upserted, ConnectorError> {
        let id = id_of(doc);
        let newer = self
            .collection
            .count_documents(doc! { "_id": id.clone(), field: { "$gt": version.clone() } })
            .await
            .map_err(|e| classify(&self.target, &e))?;
        if newer > 0 {
            return Ok(Upserted::Superseded);
        }
        let Some(stored) = self
            .collection
            .find_one(doc! { "_id": id })
            .await
            .map_err(|e| classify(&self.target, &e))?
        else {
            return Err(ConnectorError::transient(format!(
                "MongoDB at {}: a document refused for a duplicate `_id` is no longer there",
                self.target
            )));
        };
        if stored.get(field) != Some(version) {
            return Ok(Upserted::Refused(RecordError::new(
                position,
                format!(
                    "the stored document's version field `{field}` cannot be ordered against the record's: they are values of different types"
                ),
            )));
        }
        if &stored == doc {
            return Ok(Upserted::AlreadyPresent);
        }
        Ok(Upserted::Refused(RecordError::new(
            position,
            format!(
                "version conflict: the collection already holds a different document with this record's `_id` at the same version (`{field}`); it differs in {}. Give every change of a document a higher version",
                differing_fields(doc, &stored)
            ),
        )))
    }
}

fn id_of(doc: &Document) -> Bson {
    doc.get("_id").cloned().unwrap_or(Bson::Null)
}

/// The server's refusal of one document, when the error is one.
fn refusal(e: &mongodb::error::Error) -> Option<Refusal> {
    match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(Refusal::of(w.code, &w.message)),
        _ => None,
    }
}
