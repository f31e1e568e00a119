//! Where the users and collections come from: manifest files in a folder, or users,
//! collections and manifests given by code (the same validation either way).

use std::path::PathBuf;

use backup_policy::manifest::{self, Definitions, Document, Manifests};

/// Where the server reads its manifests, at start, at every reload and for `/ready`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ManifestSource {
    /// backup-repository's filesystem layout: `<root>/<namespace>/…`.
    Folder {
        /// The root (`--config-local-path`).
        root: PathBuf,
        /// The namespace (`--namespace`).
        namespace: String,
    },
    /// Manifests given as text (see [`crate::ServerConfig::manifest`]); they never change.
    Documents(Vec<Document>),
    /// Users and collections given by code, as values and as manifests in text (see
    /// [`crate::ServerConfig::user`]); they never change: every reload gives the same.
    Values(Definitions),
}

impl ManifestSource {
    /// Reads and validates the manifests (file I/O for a folder: call it off the async
    /// threads).
    ///
    /// # Errors
    /// The manifest loader's: the file, the field and the reason.
    pub fn load(&self) -> backup_policy::Result<Manifests> {
        match self {
            ManifestSource::Folder { root, namespace } => manifest::load(root, namespace),
            ManifestSource::Documents(documents) => manifest::load_documents(documents),
            ManifestSource::Values(definitions) => definitions.load(),
        }
    }

    /// [`ManifestSource::load`] on a blocking thread, the error as a line.
    pub(crate) async fn load_async(&self) -> Result<Manifests, String> {
        let source = self.clone();
        tokio::task::spawn_blocking(move || source.load().map_err(|e| e.to_string()))
            .await
            .unwrap_or_else(|e| Err(format!("reading the manifests: {e}")))
    }
}
