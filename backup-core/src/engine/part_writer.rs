//! Writes a byte stream as a multipart upload with bounded memory and concurrent parts.
//!
//! Like `object_store::WriteMultipart`, but it keeps the upload handle where a `Drop` can
//! still abort it: a cancelled upload (its future dropped) must not leave parts behind.

use bytes::Bytes;
use object_store::path::Path;
use object_store::{MultipartUpload, PutPayloadMut, PutResult};
use tokio::task::JoinSet;

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

    /// Sends the last part, waits for all parts and completes the upload. On failure the
    /// upload is aborted.
    pub(crate) async fn finish(mut self) -> Result<PutResult> {
        let result = async {
            if !self.buffer.is_empty() {
                self.send_part().await?;
            }
            self.wait_for_capacity(0).await?;
            let upload = self.upload.as_mut().ok_or_else(|| Error::internal("part writer finished twice"))?;
            upload.complete().await.map_err(|e| Error::store("complete", &self.key, e))
        }
        .await;
        match result {
            Ok(put) => {
                self.upload = None;
                Ok(put)
            }
            Err(e) => {
                self.abort().await;
                Err(e)
            }
        }
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
