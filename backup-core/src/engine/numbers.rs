//! Number marks: what the store keeps of the version numbers a collection gave out, so that a
//! catalog rebuilt from the store never gives one out again.
//!
//! A rebuild learns the numbers given out from the descriptions next to the versions' objects.
//! Two kinds of version leave none: a version purged with its object (its description goes
//! with it), and a version committed by a process killed before it wrote its description
//! (the upload's intent stands there instead, see [`crate::engine::describe::Intent`]). For
//! the first, before the description of a purged version is deleted, the engine makes sure a
//! **number mark** `<prefix>/.numbers/<collection>/<n>` exists: numbers below `n` were given
//! out. It needs none when a newer version's description is already written (a commit's own
//! rotation describes the new version first), so uploads pay nothing for it; deletions,
//! purges of the trash and time-based retention pay a listing of the collection's marks, and
//! a small write when the mark must grow. For the second, each intent counts as one number
//! that may have been given out. The rebuild resumes a collection's numbering at
//! `max(highest described number + 1, highest mark) + intents`: past every number given out,
//! with a gap only after a loss. Marks are immutable objects named by their value (writers
//! never undo one another); lower ones are deleted once a higher one is written. They are
//! written through the store itself (durable before the description goes), not the
//! descriptions' store.

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde::Serialize;

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::id::CollectionId;
use crate::time::Timestamp;
use crate::version::Version;

/// The folder of the number marks under the key prefix (a dot: no collection id starts so).
pub(crate) const NUMBERS_FOLDER: &str = ".numbers";

/// What a mark holds, for people: its name says it all.
#[derive(Serialize)]
struct Mark<'a> {
    format: &'static str,
    collection: &'a CollectionId,
    given_below: u64,
    written_at: Timestamp,
}

impl Engine {
    fn numbers_folder(&self, collection: &CollectionId) -> Path {
        self.inner.key_prefix.clone().join(NUMBERS_FOLDER).join(collection.as_str())
    }

    /// The marks of `collection` in the store, by value.
    async fn number_marks_of(&self, collection: &CollectionId) -> Result<Vec<(u64, Path)>> {
        let folder = self.numbers_folder(collection);
        let listed: Vec<_> =
            self.inner.store.list(Some(&folder)).try_collect().await.map_err(|e| Error::store("list", &folder, e))?;
        Ok(listed
            .into_iter()
            .filter_map(|m| m.location.filename().and_then(|n| n.parse::<u64>().ok()).map(|n| (n, m.location)))
            .collect())
    }

    /// Makes sure the store says that `collection` gave out every number below `below`,
    /// before the description of a purged version (numbered `below − 1` or less) is deleted.
    /// When it does already, this costs a listing of the collection's marks (one or two).
    ///
    /// # Errors
    /// Store errors: the description must then stay (the next `recover()` tries again).
    pub(crate) async fn mark_numbers_given(&self, collection: &CollectionId, below: u64) -> Result<()> {
        let marks = self.number_marks_of(collection).await?;
        let highest = marks.iter().map(|(n, _)| *n).max().unwrap_or(0);
        if highest < below {
            let key = self.numbers_folder(collection).join(below.to_string());
            let mark =
                Mark { format: "backup-engine-number-mark", collection, given_below: below, written_at: self.now() };
            let body = serde_json::to_vec(&mark).map_err(|e| Error::internal(e.to_string()))?;
            self.inner.store.put(&key, PutPayload::from(body)).await.map_err(|e| Error::store("put", &key, e))?;
            // The lower ones say less; a writer racing this one keeps its own, higher or not.
            for (_, lower) in &marks {
                let _ = self.inner.store.delete(lower).await;
            }
        }
        Ok(())
    }

    /// [`Engine::mark_numbers_given`] for versions being purged, one mark per collection (past
    /// its highest number among them): the collections whose mark could not be written (the
    /// descriptions of their versions must stay), and the first error.
    pub(crate) async fn mark_numbers_of(&self, purged: &[&Version]) -> (HashSet<CollectionId>, Option<Error>) {
        let mut highest: BTreeMap<&CollectionId, u64> = BTreeMap::new();
        for v in purged {
            let h = highest.entry(&v.collection).or_insert(0);
            *h = (*h).max(v.number);
        }
        let (mut unmarked, mut first_error) = (HashSet::new(), None);
        for (collection, number) in highest {
            if let Err(e) = self.mark_numbers_given(collection, number.saturating_add(1)).await {
                unmarked.insert(collection.clone());
                first_error.get_or_insert(e);
            }
        }
        (unmarked, first_error)
    }

    /// Deletes the marks of a deleted collection (best effort: one left behind only makes a
    /// collection created again under the same id resume its numbering later after a
    /// rebuild).
    pub(crate) async fn forget_number_marks(&self, collection: &CollectionId) {
        if let Ok(marks) = self.number_marks_of(collection).await {
            for (_, key) in marks {
                let _ = self.inner.store.delete(&key).await;
            }
        }
    }

    /// The highest mark of every collection in the store, and the keys under the marks'
    /// folder that are not marks (reported by a rebuild).
    pub(crate) async fn all_number_marks(&self) -> Result<(HashMap<CollectionId, u64>, Vec<String>)> {
        let folder = self.inner.key_prefix.clone().join(NUMBERS_FOLDER);
        let listed: Vec<_> =
            self.inner.store.list(Some(&folder)).try_collect().await.map_err(|e| Error::store("list", &folder, e))?;
        let mut highest = HashMap::new();
        let mut strange = Vec::new();
        for meta in listed {
            let mut parts = meta.location.prefix_match(&folder).into_iter().flatten();
            let (collection, value, rest) = (parts.next(), parts.next(), parts.next());
            let parsed =
                match (collection, value, rest) {
                    (Some(c), Some(v), None) => c.as_ref().parse::<CollectionId>().ok().zip(
                        v.as_ref().parse::<u64>().ok().filter(|n| (1..=crate::MAX_VERSION_NUMBER + 1).contains(n)),
                    ),
                    _ => None,
                };
            match parsed {
                Some((c, n)) => {
                    let e = highest.entry(c).or_insert(0);
                    *e = n.max(*e);
                }
                None => strange.push(format!("{}: not a number mark", meta.location)),
            }
        }
        Ok((highest, strange))
    }
}
