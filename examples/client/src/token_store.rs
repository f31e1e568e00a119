//! Sessions per server in a JSON file readable by its owner only (`backup-cli`'s
//! `tokens.json`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::Session;

#[derive(Debug, Default, Serialize, Deserialize)]
struct TokenFile {
    servers: BTreeMap<String, Session>,
}

/// A token file: `{"servers": {"http://host:port": {"token", "username", "session_id",
/// "expire"}}}`, keyed by the [normalized](crate::normalize_server_url) server address.
///
/// Every change writes a new file created with mode 0600 (in a folder created with 0700) and
/// renames it over the old one: a crash leaves the old file or the new one, and no moment
/// exposes a token to other users.
///
/// ```
/// use backup_client::{Session, TokenStore};
///
/// let dir = tempfile::tempdir()?;
/// let store = TokenStore::new(dir.path().join("tokens.json"));
/// store.put("http://127.0.0.1:8080", &Session::new("eyJ…", "ci"))?;
/// assert_eq!(store.get("http://127.0.0.1:8080")?.unwrap().username, "ci");
/// assert!(store.remove("http://127.0.0.1:8080")?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct TokenStore {
    path: PathBuf,
}

impl TokenStore {
    /// The token file at `path` (it need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        TokenStore { path: path.into() }
    }

    /// `tokens.json` in the folder `app` has in the user's config folder
    /// (`~/.config/APP/tokens.json` on Linux), if the platform has one.
    pub fn default_path(app: &str) -> Option<PathBuf> {
        dirs::config_dir().map(|d| d.join(app).join("tokens.json"))
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The session stored for `server`.
    ///
    /// # Errors
    /// [`Error::Local`] when the file cannot be read or is not a token file.
    pub fn get(&self, server: &str) -> Result<Option<Session>> {
        Ok(self.read()?.servers.get(server).cloned())
    }

    /// Stores (or replaces) the session for `server`.
    ///
    /// # Errors
    /// [`Error::Local`] when the file cannot be read or written.
    pub fn put(&self, server: &str, session: &Session) -> Result<()> {
        let mut file = self.read()?;
        file.servers.insert(server.to_owned(), session.clone());
        self.write(&file)
    }

    /// Forgets the session for `server`; whether there was one.
    ///
    /// # Errors
    /// [`Error::Local`] when the file cannot be read or written.
    pub fn remove(&self, server: &str) -> Result<bool> {
        let mut file = self.read()?;
        let had = file.servers.remove(server).is_some();
        if had {
            self.write(&file)?;
        }
        Ok(had)
    }

    fn read(&self) -> Result<TokenFile> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Local {
                message: format!("{} is not a token file ({e}); delete it and log in again", self.path.display()),
                source: None,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TokenFile::default()),
            Err(e) => Err(Error::local("read", &self.path, e)),
        }
    }

    fn write(&self, file: &TokenFile) -> Result<()> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        create_private_dir(dir)?;
        let mut builder = tempfile::Builder::new();
        builder.prefix(".tokens.");
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600));
        // Elsewhere the user's profile folder is private already.
        let mut tmp = builder.tempfile_in(dir).map_err(|e| Error::local("create a file in", dir, e))?;
        let text = serde_json::to_vec_pretty(file)
            .map_err(|e| Error::Local { message: format!("cannot write the token file: {e}"), source: None })?;
        tmp.write_all(&text)
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| Error::local("write", tmp.path(), e))?;
        tmp.persist(&self.path).map_err(|e| Error::local("write", &self.path, e.error))?;
        Ok(())
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| Error::local("create", dir, e))
}
