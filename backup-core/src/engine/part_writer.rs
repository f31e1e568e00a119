//! Writes a byte stream as a multipart upload with bounded memory and concurrent parts.
//!
//! Like `object_store::WriteMultipart`, but it keeps the upload handle where a `Drop` can
//! still abort it: a cancelled upload (its future dropped) must not leave parts behind.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{MultipartId, MultipartUpload, PutPayload, PutPayloadMut, PutResult, UploadPart};
use tokio::task::JoinSet;

use crate::engine::last_write::LastWrite;
use crate::error::{Error, Result};

#[derive(Debug)]
pub(crate) struct PartWriter {
    upload: Option<Box<dyn MultipartUpload>>,
    key: Path,
    buffer: PutPayloadMut,
    part_size: usize,
    parts_in_flight: usize,
    tasks: JoinSet<object_store::Result<()>>,
}

impl PartWriter {
    pub(crate) fn new(upload: Box<dyn MultipartUpload>, key: Path, part_size: usize, parts_in_flight: usize) -> Self {
        PartWriter {
            upload: Some(upload),
            key,
            buffer: PutPayloadMut::new(),
            part_size,
            parts_in_flight,
            tasks: JoinSet::new(),
        }
    }

    /// Buffers `bytes` (without copying) and sends every full part, waiting while
    /// `parts_in_flight` parts are being written.
    pub(crate) async fn put(&mut self, mut bytes: Bytes) -> Result<()> {
        while !bytes.is_empty() {
            let remaining = self.part_size - self.buffer.content_length();
            if bytes.len() < remaining {
                self.buffer.push(bytes);
                return Ok(());
            }
            self.buffer.push(bytes.split_to(remaining));
            self.send_part().await?;
        }
        Ok(())
    }

    async fn send_part(&mut self) -> Result<()> {
        self.wait_for_capacity(self.parts_in_flight.saturating_sub(1)).await?;
        let part = std::mem::take(&mut self.buffer).freeze();
        let upload = self.upload.as_mut().ok_or_else(|| Error::internal("part writer used after it finished"))?;
        self.tasks.spawn(upload.put_part(part));
        Ok(())
    }

    /// Waits until at most `max` parts are in flight; the first part error fails it.
    async fn wait_for_capacity(&mut self, max: usize) -> Result<()> {
        while self.tasks.len() > max {
            match self.tasks.join_next().await {
                Some(Ok(Ok(()))) | None => {}
                Some(Ok(Err(e))) => return Err(Error::store("put_part", &self.key, e)),
                Some(Err(join)) => return Err(Error::internal(format!("part task of {} failed: {join}", self.key))),
            }
        }
        Ok(())
    }

    /// Sends the last part, waits for all parts and completes the upload through
    /// `last_write` (so the completion has an end a clean-up can wait for, even if this
    /// future is dropped). On failure the upload is aborted.
    pub(crate) async fn finish(mut self, last_write: &LastWrite) -> Result<PutResult> {
        let sent = async {
            if !self.buffer.is_empty() {
                self.send_part().await?;
            }
            self.wait_for_capacity(0).await
        }
        .await;
        if let Err(e) = sent {
            self.abort().await;
            return Err(e);
        }
        let mut upload = self.upload.take().ok_or_else(|| Error::internal("part writer finished twice"))?;
        let completed = last_write
            .run(async move {
                let completed = upload.complete().await;
                if completed.is_err() {
                    let _ = upload.abort().await;
                }
                completed
            })
            .await?;
        completed.map_err(|e| Error::store("complete", &self.key, e))
    }

    /// Stops the parts in flight and aborts the upload. Best effort: what it cannot remove
    /// (parts on S3 when the abort request fails) is left to the bucket's lifecycle rule.
    pub(crate) async fn abort(&mut self) {
        self.tasks.shutdown().await;
        if let Some(mut upload) = self.upload.take() {
            let _ = upload.abort().await;
        }
    }
}

impl Drop for PartWriter {
    fn drop(&mut self) {
        // Dropping the JoinSet aborts the part tasks. The upload itself needs an async abort:
        // spawn it if a runtime is there (S3 and GCS keep parts of an upload never aborted;
        // a local-disk upload removes its staging file when dropped anyway).
        if let Some(mut upload) = self.upload.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            handle.spawn(async move {
                let _ = upload.abort().await;
            });
        }
    }
}

/// The engine's [`MultipartStore`] (which is not `Debug`).
#[derive(Clone)]
pub(crate) struct Multipart(pub(crate) Arc<dyn MultipartStore>);

impl std::fmt::Debug for Multipart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MultipartStore")
    }
}

/// A multipart upload through a [`MultipartStore`], whose id the engine knows (and records in
/// the catalog), so that what a killed process left can be aborted by id later.
#[derive(Debug)]
pub(crate) struct RecordedMultipart {
    store: Multipart,
    key: Path,
    id: MultipartId,
    /// The parts written so far, by index (they may finish out of order).
    parts: Arc<Mutex<Vec<Option<PartId>>>>,
    next: usize,
}

impl RecordedMultipart {
    pub(crate) fn new(store: Multipart, key: Path, id: MultipartId) -> Self {
        RecordedMultipart { store, key, id, parts: Arc::default(), next: 0 }
    }
}

#[async_trait::async_trait]
impl MultipartUpload for RecordedMultipart {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let (store, key, id, parts) = (self.store.0.clone(), self.key.clone(), self.id.clone(), self.parts.clone());
        let index = self.next;
        self.next += 1;
        Box::pin(async move {
            let part = store.put_part(&key, &id, index, data).await?;
            let mut parts = parts.lock().unwrap_or_else(|p| p.into_inner());
            if parts.len() <= index {
                parts.resize(index + 1, None);
            }
            parts[index] = Some(part);
            Ok(())
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let parts: Option<Vec<PartId>> =
            std::mem::take(&mut *self.parts.lock().unwrap_or_else(|p| p.into_inner())).into_iter().collect();
        let parts = parts.ok_or_else(|| object_store::Error::Generic {
            store: "multipart",
            source: format!("a part of {} was not written", self.key).into(),
        })?;
        self.store.0.complete_multipart(&self.key, &self.id, parts).await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.store.0.abort_multipart(&self.key, &self.id).await
    }
}
