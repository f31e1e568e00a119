//! P4: runs `benches/http-vs-nginx.sh` with the server binary this bench was built with.
//! The script prints `P4 http_upload_vs_nginx ratio=…`, `P4 http_download_vs_nginx ratio=…`
//! and the server's peak memory during a 4 GiB upload.

use std::path::Path;
use std::process::Command;

fn main() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benches/http-vs-nginx.sh");
    let status = Command::new("bash")
        .arg(&script)
        .env("BACKUP_SERVER_BIN", env!("CARGO_BIN_EXE_backup-server"))
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(status.success(), "{} failed: {status}", script.display());
}
