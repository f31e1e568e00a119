//! [`LastWrite`]: the write that makes an upload's object whole, with an end a clean-up can
//! wait for.

use std::sync::Arc;

use crate::error::{Error, Result};

/// The write that makes an upload's object whole (the single PUT, or the completion of a
/// multipart upload), run as its own task so that it has an end the clean-up of a dropped
/// upload can wait for: a store may finish such a write after the future that asked for it
/// is gone.
#[derive(Debug, Default, Clone)]
pub(crate) struct LastWrite(Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>);

impl LastWrite {
    /// Runs `write` to its end, even if the caller is dropped meanwhile; its output.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        write: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let _ = tx.send(write.await);
        });
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        rx.await.map_err(|_| Error::internal("the task writing the object ended without an answer"))
    }

    pub(crate) fn take(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}
