//! Tokens per server, in `tokens.json` in the user's config folder (`BACKUP_CLI_CONFIG_DIR`
//! overrides it), readable by the user only.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{CliError, Result};

/// What `login` stored for one server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredToken {
    pub(crate) token: String,
    pub(crate) username: String,
    #[serde(default)]
    pub(crate) session_id: String,
    #[serde(default)]
    pub(crate) expire: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TokenFile {
    servers: BTreeMap<String, StoredToken>,
}

/// The token file.
#[derive(Debug)]
pub(crate) struct TokenStore {
    path: PathBuf,
}

impl TokenStore {
    /// The user's token file (it need not exist yet).
    pub(crate) fn open() -> Result<Self> {
        let dir = match std::env::var_os("BACKUP_CLI_CONFIG_DIR") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => dirs::config_dir()
                .ok_or_else(|| CliError::usage("cannot find your config folder: set BACKUP_CLI_CONFIG_DIR"))?
                .join("backup-cli"),
        };
        Ok(TokenStore { path: dir.join("tokens.json") })
    }

    /// The token stored for `server`.
    pub(crate) fn get(&self, server: &str) -> Result<Option<StoredToken>> {
        Ok(self.read()?.servers.get(server).cloned())
    }

    /// Stores (or replaces) the token for `server`.
    pub(crate) fn put(&self, server: &str, token: StoredToken) -> Result<()> {
        let mut file = self.read()?;
        file.servers.insert(server.to_owned(), token);
        self.write(&file)
    }

    /// Forgets the token for `server`; whether there was one.
    pub(crate) fn remove(&self, server: &str) -> Result<bool> {
        let mut file = self.read()?;
        let had = file.servers.remove(server).is_some();
        if had {
            self.write(&file)?;
        }
        Ok(had)
    }

    fn read(&self) -> Result<TokenFile> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                CliError::usage(format!(
                    "{} is not a token file ({e}); delete it and log in again",
                    self.path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TokenFile::default()),
            Err(e) => Err(CliError::local("read", &self.path, e)),
        }
    }

    /// Writes a temporary file created with mode 0600, then renames it over the old one: a
    /// crash leaves the old file or the new one, and no moment exposes a token to others.
    fn write(&self, file: &TokenFile) -> Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        create_private_dir(dir)?;
        let mut builder = tempfile::Builder::new();
        builder.prefix(".tokens.");
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600));
        // Elsewhere the user's profile folder is private already.
        let mut tmp = builder.tempfile_in(dir).map_err(|e| CliError::local("create a file in", dir, e))?;
        let text = serde_json::to_vec_pretty(file).map_err(CliError::usage)?;
        tmp.write_all(&text)
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| CliError::local("write", tmp.path(), e))?;
        tmp.persist(&self.path).map_err(|e| CliError::local("write", &self.path, e.error))?;
        Ok(())
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| CliError::local("create", dir, e))
}
