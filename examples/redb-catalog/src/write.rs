//! Writes: the [`Mutation`]s of a step, applied to the tables of one write transaction, with
//! every index kept in step with its rows.

use backup_core::audit::{AuditHead, LogCursor};
use backup_core::catalog::protocol::{Counters, Mutation, VersionRow};
use backup_core::catalog::{Tombstone, TombstoneKind};
use backup_core::{AuditEvent, Collection, Error, Session, VersionState};
use redb::{ReadableTable, ReadableTableMetadata, Table, WriteTransaction};

use crate::read::{audit_checkpoint, collection, repository_id, row, session};
use crate::tables::*;

type Rows<'t> = Table<'t, &'static str, &'static [u8]>;
type Index<'t, K> = Table<'t, K, ()>;

/// Every table, open for writing in one transaction.
pub(crate) struct Writer<'t> {
    versions: Rows<'t>,
    numbers: Table<'t, (&'static str, u64), &'static str>,
    states: Table<'t, (&'static str, u8, u64), &'static str>,
    pending: Index<'t, (&'static str, &'static str)>,
    leases: Index<'t, (i64, &'static str)>,
    owners: Index<'t, (&'static str, &'static str)>,
    trash: Index<'t, (i64, &'static str)>,
    object_keys: Index<'t, (&'static str, &'static str)>,
    undescribed: Table<'t, &'static str, u64>,
    collections: Rows<'t>,
    tombstones: Rows<'t>,
    tombstones_by_collection: Index<'t, (&'static str, &'static str)>,
    sessions: Rows<'t>,
    sessions_by_user: Index<'t, (&'static str, u64, &'static str)>,
    sessions_by_time: Index<'t, (u64, &'static str)>,
    sessions_by_expiry: Index<'t, (i64, &'static str)>,
    audit: Table<'t, u64, &'static [u8]>,
    cursors: Table<'t, &'static str, &'static [u8]>,
    meta: Table<'t, &'static str, &'static str>,
}

/// A write that found no row to change: the decision and the catalog disagree.
fn no_row(m: &Mutation) -> Fail {
    Fail::Step(Error::internal(format!("{BACKEND}: {m:?} matched no row")))
}

/// A pending row that another step removed meanwhile: a conflict, not a bug.
fn not_pending(what: String) -> Fail {
    Fail::Step(Error::conflict(format!("the upload changed meanwhile: {what}")))
}

impl<'t> Writer<'t> {
    /// Opens (and on first use creates) every table.
    pub(crate) fn open(tx: &'t WriteTransaction) -> Res<Self> {
        Ok(Writer {
            versions: tx.open_table(VERSIONS)?,
            numbers: tx.open_table(NUMBERS)?,
            states: tx.open_table(STATES)?,
            pending: tx.open_table(PENDING)?,
            leases: tx.open_table(LEASES)?,
            owners: tx.open_table(OWNERS)?,
            trash: tx.open_table(TRASH)?,
            object_keys: tx.open_table(OBJECT_KEYS)?,
            undescribed: tx.open_table(UNDESCRIBED)?,
            collections: tx.open_table(COLLECTIONS)?,
            tombstones: tx.open_table(TOMBSTONES)?,
            tombstones_by_collection: tx.open_table(TOMBSTONES_BY_COLLECTION)?,
            sessions: tx.open_table(SESSIONS)?,
            sessions_by_user: tx.open_table(SESSIONS_BY_USER)?,
            sessions_by_time: tx.open_table(SESSIONS_BY_TIME)?,
            sessions_by_expiry: tx.open_table(SESSIONS_BY_EXPIRY)?,
            audit: tx.open_table(AUDIT)?,
            cursors: tx.open_table(LOG_CURSORS)?,
            meta: tx.open_table(META)?,
        })
    }

    /// Checks the layout marker, writing it into a new database.
    pub(crate) fn check_format(&mut self) -> Res<()> {
        let found = self.meta.get("format")?.map(|g| g.value().to_owned());
        match found.as_deref() {
            None => {
                self.meta.insert("format", FORMAT)?;
            }
            Some(FORMAT) => {}
            Some(other) => {
                return Err(Error::internal(format!(
                    "{BACKEND}: the database has layout {other}, this build knows {FORMAT} only"
                ))
                .into());
            }
        }
        Ok(())
    }

    /// Whether the catalog holds nothing an import could collide with.
    pub(crate) fn is_empty(&self) -> Res<bool> {
        Ok(self.collections.is_empty()?
            && self.versions.is_empty()?
            && self.tombstones.is_empty()?
            && self.sessions.is_empty()?
            && self.audit.is_empty()?
            && audit_checkpoint(&self.meta)?.is_none()
            && self.cursors.is_empty()?
            && repository_id(&self.meta)?.is_none())
    }

    /// Applies one mutation, failing with the error its documentation names when a key is
    /// taken (the whole step is then dropped, so nothing of it is written).
    pub(crate) fn apply(&mut self, m: Mutation) -> Res<()> {
        match &m {
            Mutation::CreateCollection(c) => {
                if collection(&self.collections, c.id.as_str())?.is_some() {
                    return Err(Error::CollectionExists { collection: c.id.clone() }.into());
                }
                self.put_collection(c, &Counters::empty())?;
            }
            Mutation::UpdateCollection(c) => {
                let (_, counters) = collection(&self.collections, c.id.as_str())?.ok_or_else(|| no_row(&m))?;
                self.put_collection(c, &counters)?;
            }
            Mutation::SetCounters { collection: id, counters } => {
                let (c, _) = collection(&self.collections, id.as_str())?.ok_or_else(|| no_row(&m))?;
                self.put_collection(&c, counters)?;
            }
            Mutation::DeleteCollection { id, at } => {
                let c = id.as_str();
                if self.collections.remove(c)?.is_none() {
                    return Err(no_row(&m));
                }
                let mut ids = Vec::new();
                for entry in self.numbers.range((c, 0)..=(c, u64::MAX))? {
                    ids.push(entry?.1.value().to_owned());
                }
                for entry in self.pending.range((c, "")..)? {
                    let (key, _) = entry?;
                    match key.value() {
                        (of, vid) if of == c => ids.push(vid.to_owned()),
                        _ => break,
                    }
                }
                for vid in ids {
                    if let Some(VersionRow::Version(v)) = self.remove_row(&vid)?
                        && v.state == VersionState::Trashed
                    {
                        let t = Tombstone::new(v.object_key, id.clone(), v.id, TombstoneKind::Purged, *at);
                        self.put_tombstone(&t)?;
                    }
                }
            }
            Mutation::InsertPending(p) => {
                if row(&self.versions, &p.id.to_string())?.is_some() {
                    return Err(Error::AlreadyExists { what: format!("upload {}", p.id) }.into());
                }
                collection(&self.collections, p.collection.as_str())?.ok_or_else(|| no_row(&m))?;
                self.put_row(&VersionRow::Pending(p.clone()))?;
            }
            Mutation::UpdatePending(p) => match row(&self.versions, &p.id.to_string())? {
                Some(VersionRow::Pending(_)) => self.put_row(&VersionRow::Pending(p.clone()))?,
                _ => return Err(not_pending(format!("upload {} is not pending any more", p.id))),
            },
            Mutation::RemovePending(id) => match row(&self.versions, &id.to_string())? {
                Some(VersionRow::Pending(_)) => {
                    self.remove_row(&id.to_string())?;
                }
                _ => return Err(not_pending(format!("upload {id} is not pending any more"))),
            },
            Mutation::CommitVersion(v) => {
                match row(&self.versions, &v.id.to_string())? {
                    Some(VersionRow::Pending(p)) if p.collection == v.collection => {}
                    _ => {
                        return Err(not_pending(format!("upload {} to {} has no reservation", v.id, v.collection)));
                    }
                }
                if self.numbers.get((v.collection.as_str(), v.number))?.is_some() {
                    return Err(
                        Error::conflict(format!("version {} of {} exists already", v.number, v.collection)).into()
                    );
                }
                self.put_row(&VersionRow::Version(v.clone()))?;
            }
            Mutation::UpdateVersion(v) => match row(&self.versions, &v.id.to_string())? {
                Some(VersionRow::Version(mut old)) if old.collection == v.collection => {
                    // What a version's later life changes; what it was uploaded as stays.
                    old.state = v.state;
                    old.trashed_at = v.trashed_at;
                    old.trash_reason = v.trash_reason.clone();
                    old.purged_at = v.purged_at;
                    old.held = v.held;
                    old.protected_until = v.protected_until;
                    old.lock = v.lock;
                    old.verified_at = v.verified_at;
                    old.quarantined = v.quarantined.clone();
                    self.put_row(&VersionRow::Version(old))?;
                }
                _ => return Err(no_row(&m)),
            },
            Mutation::InsertVersion(v) => {
                let taken = row(&self.versions, &v.id.to_string())?.is_some()
                    || self.numbers.get((v.collection.as_str(), v.number))?.is_some();
                if taken {
                    let what = format!("version {} of {} ({})", v.number, v.collection, v.id);
                    return Err(Error::AlreadyExists { what }.into());
                }
                collection(&self.collections, v.collection.as_str())?.ok_or_else(|| no_row(&m))?;
                self.put_row(&VersionRow::Version(v.clone()))?;
            }
            Mutation::MarkUndescribed { id, mark } => {
                let id = id.to_string();
                match row(&self.versions, &id)? {
                    Some(VersionRow::Version(_)) => {
                        self.undescribed.insert(id.as_str(), *mark)?;
                    }
                    _ => return Err(no_row(&m)),
                }
            }
            Mutation::ClearUndescribed { collection: c, id, mark } => {
                let id = id.to_string();
                let ours = matches!(row(&self.versions, &id)?, Some(VersionRow::Version(v)) if v.collection == *c);
                let same = self.undescribed.get(id.as_str())?.is_some_and(|g| g.value() == *mark);
                if ours && same {
                    self.undescribed.remove(id.as_str())?;
                }
            }
            Mutation::InsertTombstone(t) => self.put_tombstone(t)?,
            Mutation::ForgetTombstone(key) => {
                let old = self.tombstones.remove(key.as_str())?.map(|g| from_json::<Tombstone>(g.value()));
                if let Some(old) = old.transpose()? {
                    self.tombstones_by_collection.remove((old.collection.as_str(), key.as_str()))?;
                }
            }
            Mutation::InsertSession(s) => {
                if session(&self.sessions, s.id.as_str())?.is_some() {
                    return Err(Error::AlreadyExists { what: format!("session {}", s.id) }.into());
                }
                self.put_session(s)?;
            }
            Mutation::RevokeSession { id, at } => {
                let mut s = session(&self.sessions, id.as_str())?.ok_or_else(|| no_row(&m))?;
                s.revoked_at.get_or_insert(*at);
                self.sessions.insert(id.as_str(), to_json(&s)?.as_slice())?;
            }
            Mutation::DeleteSessionsExpiredBefore(before) => {
                let mut ids = Vec::new();
                for entry in self.sessions_by_expiry.range(..(micros(*before), ""))? {
                    ids.push(entry?.0.value().1.to_owned());
                }
                for id in ids {
                    if let Some(s) = session(&self.sessions, &id)? {
                        self.remove_session(&s)?;
                    }
                }
            }
            Mutation::AppendAudit(e) => {
                let head = match self.audit.last()? {
                    Some((_, last)) => from_json::<AuditEvent>(last.value())?.head_for_append(),
                    None => audit_checkpoint(&self.meta)?.unwrap_or(AuditHead::GENESIS),
                };
                let e = e.clone().chained(&head)?;
                self.audit.insert(e.seq, to_json(&e)?.as_slice())?;
            }
            Mutation::PruneAudit { through } => {
                let mut seqs = Vec::new();
                let mut last = None;
                for entry in self.audit.range(..=*through)? {
                    let (seq, event) = entry?;
                    seqs.push(seq.value());
                    last = Some(from_json::<AuditEvent>(event.value())?.head_for_append());
                }
                for seq in seqs {
                    self.audit.remove(seq)?;
                }
                if let Some(head) = last {
                    self.meta.insert("audit_checkpoint", String::from_utf8_lossy(&to_json(&head)?).as_ref())?;
                }
            }
            Mutation::ClaimCursor { name, owner, start_at, now, until } => {
                let found = self.cursors.get(name.as_str())?.map(|g| from_json::<LogCursor>(g.value())).transpose()?;
                let mut c = found.unwrap_or_else(|| LogCursor::new(name.clone(), *start_at));
                if !c.claimable_by(owner, *now) {
                    return Err(backup_core::audit::cursor_held(&c).into());
                }
                c.owner = Some(owner.clone());
                c.lease_until = Some(*until);
                self.cursors.insert(name.as_str(), to_json(&c)?.as_slice())?;
            }
            Mutation::AdvanceCursor { name, owner, from, to, state } => {
                let found = self.cursors.get(name.as_str())?.map(|g| from_json::<LogCursor>(g.value())).transpose()?;
                match found {
                    Some(mut c) if c.owner.as_deref() == Some(owner.as_str()) && c.seq == *from => {
                        c.seq = *to;
                        c.state = state.clone();
                        self.cursors.insert(name.as_str(), to_json(&c)?.as_slice())?;
                    }
                    _ => return Err(backup_core::audit::cursor_moved(name).into()),
                }
            }
            Mutation::SetCursor(c) => {
                self.cursors.insert(c.name.as_str(), to_json(c)?.as_slice())?;
            }
            Mutation::SetAuditCheckpoint(head) => {
                if !self.audit.is_empty()? {
                    return Err(no_row(&m));
                }
                self.meta.insert("audit_checkpoint", String::from_utf8_lossy(&to_json(head)?).as_ref())?;
            }
            Mutation::SetRepository(id) => match repository_id(&self.meta)? {
                Some(current) if current != *id => {
                    return Err(
                        Error::conflict(format!("the catalog belongs to repository {current}, not {id}")).into()
                    );
                }
                Some(_) => {}
                None => {
                    self.meta.insert("repository", id.to_string().as_str())?;
                }
            },
            // `Mutation` grows with the engine: a write this build cannot apply must fail the
            // step, never be skipped.
            other => {
                return Err(
                    Error::internal(format!("{BACKEND}: a mutation this build does not know: {other:?}")).into()
                );
            }
        }
        Ok(())
    }

    fn put_collection(&mut self, c: &Collection, counters: &Counters) -> Res<()> {
        let row: (&Collection, &Counters) = (c, counters);
        self.collections.insert(c.id.as_str(), to_json(&row)?.as_slice())?;
        Ok(())
    }

    /// Writes a version row, replacing the index entries of the row it replaces.
    fn put_row(&mut self, new: &VersionRow) -> Res<()> {
        let id = new.id().to_string();
        if let Some(old) = row(&self.versions, &id)? {
            self.index(&id, &old, false)?;
        }
        self.index(&id, new, true)?;
        self.versions.insert(id.as_str(), encode_row(new)?.as_slice())?;
        Ok(())
    }

    /// Deletes a version row, its index entries and its mark.
    fn remove_row(&mut self, id: &str) -> Res<Option<VersionRow>> {
        let Some(old) = row(&self.versions, id)? else { return Ok(None) };
        self.index(id, &old, false)?;
        self.versions.remove(id)?;
        self.undescribed.remove(id)?;
        Ok(Some(old))
    }

    /// Adds (`add`) or removes the index entries of a row.
    fn index(&mut self, id: &str, row: &VersionRow, add: bool) -> Res<()> {
        fn set<K: redb::Key + 'static, V: redb::Value + 'static>(
            table: &mut Table<'_, K, V>,
            key: K::SelfType<'_>,
            value: V::SelfType<'_>,
            add: bool,
        ) -> Res<()> {
            if add {
                table.insert(key, value)?;
            } else {
                table.remove(key)?;
            }
            Ok(())
        }
        match row {
            VersionRow::Pending(p) => {
                set(&mut self.pending, (p.collection.as_str(), id), (), add)?;
                set(&mut self.leases, (micros(p.lease_until), id), (), add)?;
                if let Some(owner) = &p.owner {
                    set(&mut self.owners, (owner.as_str(), id), (), add)?;
                }
                set(&mut self.object_keys, (p.object_key.as_str(), id), (), add)?;
            }
            VersionRow::Version(v) => {
                let c = v.collection.as_str();
                set(&mut self.numbers, (c, v.number), id, add)?;
                set(&mut self.states, (c, state_code(v.state), v.number), id, add)?;
                if let (VersionState::Trashed, Some(at)) = (v.state, v.trashed_at) {
                    set(&mut self.trash, (micros(at), id), (), add)?;
                }
                set(&mut self.object_keys, (v.object_key.as_str(), id), (), add)?;
            }
            other => {
                return Err(Error::internal(format!("{BACKEND}: a row this build does not know: {other:?}")).into());
            }
        }
        Ok(())
    }

    fn put_tombstone(&mut self, t: &Tombstone) -> Res<()> {
        let key = t.object_key.as_str();
        let old = self.tombstones.insert(key, to_json(t)?.as_slice())?.map(|g| from_json::<Tombstone>(g.value()));
        if let Some(old) = old.transpose()? {
            self.tombstones_by_collection.remove((old.collection.as_str(), key))?;
        }
        self.tombstones_by_collection.insert((t.collection.as_str(), key), ())?;
        Ok(())
    }

    fn put_session(&mut self, s: &Session) -> Res<()> {
        let id = s.id.as_str();
        self.sessions.insert(id, to_json(s)?.as_slice())?;
        self.sessions_by_user.insert((s.user.as_str(), newest_first(s.issued_at), id), ())?;
        self.sessions_by_time.insert((newest_first(s.issued_at), id), ())?;
        self.sessions_by_expiry.insert((micros(s.expires_at), id), ())?;
        Ok(())
    }

    fn remove_session(&mut self, s: &Session) -> Res<()> {
        let id = s.id.as_str();
        self.sessions.remove(id)?;
        self.sessions_by_user.remove((s.user.as_str(), newest_first(s.issued_at), id))?;
        self.sessions_by_time.remove((newest_first(s.issued_at), id))?;
        self.sessions_by_expiry.remove((micros(s.expires_at), id))?;
        Ok(())
    }
}
