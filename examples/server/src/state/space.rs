//! A reserve of disk space, given back when the disk fills, so that logins and deletions go
//! on working and space can be freed through the API.
//!
//! At start the server writes a file of `--disk-reserve` bytes beside its SQLite catalog (or,
//! without one, in its local storage folder). The first request that meets a full disk (its
//! answer is `507`) deletes the file: the catalog has room again for the writes of a login or
//! a deletion, and a deletion frees the version's bytes. While the reserve is given back,
//! uploads are refused with `507` before a byte is read, so that they do not eat the room
//! meant for freeing space. The maintenance writes the reserve again once the disk has room
//! for it twice over, and uploads resume.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// The reserve file's name.
const FILE: &str = ".space-reserve";

/// The reserve, if the server has local files to protect.
#[derive(Debug)]
pub(crate) struct SpaceReserve {
    file: Option<PathBuf>,
    size: u64,
    /// Given back: the disk filled, and the reserve was not written again yet.
    low: AtomicBool,
}

impl SpaceReserve {
    /// No reserve (a catalog and storage elsewhere, or `--disk-reserve 0`).
    pub(crate) fn none() -> Self {
        SpaceReserve { file: None, size: 0, low: AtomicBool::new(false) }
    }

    /// The reserve in `folder` (the SQLite catalog's, or the local storage's), written now if
    /// it is missing; a disk already too full for it starts the server in low-space mode.
    pub(crate) fn keep_in(folder: &Path, size: u64) -> Self {
        if size == 0 {
            return SpaceReserve::none();
        }
        let reserve = SpaceReserve { file: Some(folder.join(FILE)), size, low: AtomicBool::new(false) };
        if let Err(e) = reserve.write() {
            tracing::warn!(error = %e, folder = %folder.display(), bytes = size, "the disk reserve cannot be written: uploads are refused until there is room");
            reserve.low.store(true, Ordering::SeqCst);
        }
        reserve
    }

    /// Whether the reserve was given back (uploads are refused meanwhile).
    pub(crate) fn is_low(&self) -> bool {
        self.low.load(Ordering::SeqCst)
    }

    /// Gives the reserve back: the disk is full.
    pub(crate) fn release(&self) {
        let Some(file) = &self.file else { return };
        if self.low.swap(true, Ordering::SeqCst) {
            return;
        }
        match std::fs::remove_file(file) {
            Ok(()) => tracing::error!(
                bytes = self.size,
                "the disk is full: the disk reserve was given back so that logins and deletions work; uploads are refused until space is freed"
            ),
            Err(e) => tracing::error!(error = %e, "the disk is full, and the disk reserve could not be given back"),
        }
    }

    /// Writes the reserve again if it was given back and the disk has room for it twice over
    /// (the maintenance calls this).
    pub(crate) fn restore(&self) {
        if !self.is_low() {
            return;
        }
        let Some(file) = &self.file else { return };
        let folder = file.parent().unwrap_or(Path::new("."));
        match free_bytes(folder) {
            Some(free) if free < self.size.saturating_mul(2) => return,
            _ => {}
        }
        match self.write() {
            Ok(()) => {
                self.low.store(false, Ordering::SeqCst);
                tracing::info!(bytes = self.size, "the disk reserve is back: uploads are accepted again");
            }
            Err(e) => tracing::warn!(error = %e, "the disk reserve cannot be written yet"),
        }
    }

    /// Writes the file (real blocks, not a sparse file), unless it is there already whole.
    fn write(&self) -> std::io::Result<()> {
        let Some(file) = &self.file else { return Ok(()) };
        if std::fs::metadata(file).is_ok_and(|m| m.len() >= self.size) {
            return Ok(());
        }
        let partial = file.with_extension("partial");
        let written = (|| {
            let mut f = std::fs::File::create(&partial)?;
            let zeros = vec![0u8; 1 << 20];
            let mut left = self.size;
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                f.write_all(&zeros[..n])?;
                left -= n as u64;
            }
            f.sync_all()?;
            std::fs::rename(&partial, file)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        written
    }
}

/// The bytes an unprivileged process may still write under `folder`.
#[cfg(unix)]
// `fsblkcnt_t` and `c_ulong` are `u64` on 64-bit Linux, not on every unix.
#[allow(clippy::useless_conversion)]
fn free_bytes(folder: &Path) -> Option<u64> {
    let stat = nix::sys::statvfs::statvfs(folder).ok()?;
    Some(u64::from(stat.blocks_available()).saturating_mul(u64::from(stat.fragment_size())))
}

#[cfg(not(unix))]
fn free_bytes(_folder: &Path) -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_written_given_back_and_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let reserve = SpaceReserve::keep_in(dir.path(), 3 << 20);
        let file = dir.path().join(FILE);
        assert_eq!(std::fs::metadata(&file).unwrap().len(), 3 << 20);
        assert!(!reserve.is_low());
        reserve.release();
        assert!(reserve.is_low() && !file.exists());
        reserve.restore();
        assert!(!reserve.is_low());
        assert_eq!(std::fs::metadata(&file).unwrap().len(), 3 << 20);
        let none = SpaceReserve::keep_in(dir.path(), 0);
        none.release();
        assert!(!none.is_low(), "no reserve, nothing to give back");
    }
}
