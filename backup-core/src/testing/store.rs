//! [`FaultyStore`]: an object store wrapper that fails the N-th call or the N-th byte.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::{self, BoxStream};
use futures::{FutureExt, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, UploadPart,
};

use super::faults::{FaultMode, Faults};

fn injected(op: &str) -> object_store::Error {
    object_store::Error::Generic { store: "FaultyStore", source: format!("injected fault in {op}").into() }
}

/// Forwards every call to the wrapped store, counting it in [`Faults`] and failing the one
/// the plan names; reads of objects can also fail at a chosen byte.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    faults: Faults,
}

impl FaultyStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>, faults: Faults) -> Self {
        FaultyStore { inner, faults }
    }

    async fn around<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = object_store::Result<T>>,
    ) -> object_store::Result<T> {
        self.faults.maybe_yield().await;
        match self.faults.next(op) {
            None => call.await,
            Some(FaultMode::Before) => Err(injected(op)),
            Some(FaultMode::After) => {
                call.await?;
                Err(injected(op))
            }
        }
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.around("put", self.inner.put_opts(location, payload, opts)).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let upload = self.around("put_multipart", self.inner.put_multipart_opts(location, opts)).await?;
        Ok(Box::new(FaultyUpload { inner: upload, faults: self.faults.clone() }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        let got = self.around("get", self.inner.get_opts(location, options)).await?;
        let Some(limit) = self.faults.read_limit() else { return Ok(got) };
        // Deliver `limit` bytes, then fail.
        let (meta, range, attributes, extensions) =
            (got.meta.clone(), got.range.clone(), got.attributes.clone(), got.extensions.clone());
        let mut delivered = 0u64;
        let s = got
            .into_stream()
            .map(move |item| {
                let chunk = item?;
                if delivered + chunk.len() as u64 > limit {
                    return Err(injected("read"));
                }
                delivered += chunk.len() as u64;
                Ok(chunk)
            })
            .boxed();
        Ok(GetResult { payload: GetResultPayload::Stream(s), meta, range, attributes, extensions })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        match self.faults.next("delete") {
            None => self.inner.delete_stream(locations),
            Some(FaultMode::Before) => locations.map(|_| Err(injected("delete"))).boxed(),
            Some(FaultMode::After) => self.inner.delete_stream(locations).map(|_| Err(injected("delete"))).boxed(),
        }
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        match self.faults.next("list") {
            None => self.inner.list(prefix),
            Some(FaultMode::Before) => stream::once(async { Err(injected("list")) }).boxed(),
            Some(FaultMode::After) => {
                self.inner.list(prefix).chain(stream::once(async { Err(injected("list")) })).boxed()
            }
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.around("list_with_delimiter", self.inner.list_with_delimiter(prefix)).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.around("copy", self.inner.copy_opts(from, to, options)).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> object_store::Result<()> {
        self.around("rename", self.inner.rename_opts(from, to, options)).await
    }
}

#[derive(Debug)]
struct FaultyUpload {
    inner: Box<dyn MultipartUpload>,
    faults: Faults,
}

#[async_trait]
impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        match self.faults.next("put_part") {
            None => self.inner.put_part(data),
            Some(FaultMode::Before) => async { Err(injected("put_part")) }.boxed(),
            Some(FaultMode::After) => {
                let part = self.inner.put_part(data);
                async move {
                    part.await?;
                    Err(injected("put_part"))
                }
                .boxed()
            }
        }
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.faults.maybe_yield().await;
        match self.faults.next("complete") {
            None => self.inner.complete().await,
            Some(FaultMode::Before) => Err(injected("complete")),
            Some(FaultMode::After) => {
                self.inner.complete().await?;
                Err(injected("complete"))
            }
        }
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.faults.maybe_yield().await;
        match self.faults.next("abort_multipart") {
            None => self.inner.abort().await,
            Some(FaultMode::Before) => Err(injected("abort_multipart")),
            Some(FaultMode::After) => {
                self.inner.abort().await?;
                Err(injected("abort_multipart"))
            }
        }
    }
}
