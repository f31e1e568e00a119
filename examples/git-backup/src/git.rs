//! The git side: a mirror kept in the cache folder, its refs, a bundle of it, and a
//! repository restored from a bundle. Everything goes through the machine's `git`.
//!
//! Why a bundle and not a tar of the mirror: a bundle holds exactly the refs and the objects
//! they reach, `git bundle verify` checks it, `git clone`/`git fetch` read it on any git, and
//! it carries nothing of the mirror's own configuration (a remote URL, hooks), which a tar
//! would copy along.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::process::Command;

/// The refs of a repository: `OBJECT REFNAME` lines, sorted, and where `HEAD` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refs {
    pub(crate) lines: String,
    pub(crate) head: Option<String>,
}

impl Refs {
    /// The SHA-256 of the lines: equal refs, equal digest.
    pub(crate) fn digest(&self) -> String {
        hex::encode(Sha256::digest(self.lines.as_bytes()))
    }

    pub(crate) fn count(&self) -> usize {
        self.lines.lines().count()
    }
}

/// The environment variables git may see: what it needs to find itself, its configuration,
/// the user's SSH agent and keys, proxies and certificates. Everything else (a backup token,
/// the forge token of another repository, `GIT_DIR` or `GIT_CONFIG_*` set by a caller) stays
/// out of git and of every program it starts (ssh, credential helpers, hooks).
const INHERITED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "XDG_CONFIG_HOME",
    "SSH_AUTH_SOCK",
    "GIT_SSH",
    "GIT_SSH_COMMAND",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "all_proxy",
];

/// The transports git may use: `ext::` and `fd::` (which run commands) are not among them,
/// whatever a source, a redirect or a submodule asks for.
const ALLOWED_PROTOCOLS: &str = "file:git:http:https:ssh";

/// Credentials for one source: a bearer token sent only to the source's own address.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Credentials<'a> {
    pub(crate) source: &'a str,
    pub(crate) token: &'a str,
}

/// The configuration git gets on its environment (never in a file, never on its command line).
fn config_env(credentials: Option<Credentials<'_>>) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    if let Some(c) = credentials {
        // The header is scoped to the source's URL, and redirects are not followed: git
        // would otherwise send the header to wherever the source redirects (another host).
        pairs.push((format!("http.{}.extraHeader", c.source), format!("Authorization: Bearer {}", c.token)));
        pairs.push(("http.followRedirects".to_owned(), "false".to_owned()));
    }
    let mut env = vec![("GIT_CONFIG_COUNT".to_owned(), pairs.len().to_string())];
    for (i, (key, value)) in pairs.into_iter().enumerate() {
        env.push((format!("GIT_CONFIG_KEY_{i}"), key));
        env.push((format!("GIT_CONFIG_VALUE_{i}"), value));
    }
    env
}

/// Runs git with a cleared environment (plus [`INHERITED_ENV`]); its standard output, or an
/// error with what it printed on standard error.
async fn git<I, S>(args: I, credentials: Option<Credentials<'_>>) -> Result<String, String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let mut cmd = Command::new("git");
    cmd.env_clear();
    for name in INHERITED_ENV {
        if let Some(value) = std::env::var_os(name) {
            cmd.env(name, value);
        }
    }
    cmd.envs(config_env(credentials))
        .env("GIT_ALLOW_PROTOCOL", ALLOWED_PROTOCOLS)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "")
        .env("SSH_ASKPASS", "")
        .env("GCM_INTERACTIVE", "never");
    let out = cmd
        .args(&args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run git: {e}"))?;
    let shown: Vec<String> = args.iter().take(4).map(|a| a.to_string_lossy().into_owned()).collect();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!("git {} failed ({}): {}", shown.join(" "), out.status, stderr.trim()));
    }
    String::from_utf8(out.stdout).map_err(|_| format!("git {} printed something that is not UTF-8", shown.join(" ")))
}

/// Brings the mirror of `source` in `cache` up to date (cloned the first time, fetched with
/// prune afterwards); its path.
pub(crate) async fn mirror(
    source: &str,
    cache: &Path,
    name: &str,
    credentials: Option<Credentials<'_>>,
) -> Result<PathBuf, String> {
    let mirror = cache.join(format!("{name}.git"));
    if mirror.join("HEAD").exists() {
        git(
            [
                OsStr::new("-C"),
                mirror.as_os_str(),
                OsStr::new("remote"),
                OsStr::new("set-url"),
                OsStr::new("--"),
                OsStr::new("origin"),
                OsStr::new(source),
            ],
            None,
        )
        .await?;
        git(
            [
                OsStr::new("-C"),
                mirror.as_os_str(),
                OsStr::new("fetch"),
                OsStr::new("--prune"),
                OsStr::new("--quiet"),
                OsStr::new("origin"),
            ],
            credentials,
        )
        .await?;
        return Ok(mirror);
    }
    tokio::fs::create_dir_all(cache).await.map_err(|e| format!("cannot create {}: {e}", cache.display()))?;
    // Cloned beside, then renamed: an interrupted clone never passes for a mirror.
    let partial = cache.join(format!(".{name}.git.partial"));
    let _ = tokio::fs::remove_dir_all(&partial).await;
    let cloned = git(
        [
            OsStr::new("clone"),
            OsStr::new("--mirror"),
            OsStr::new("--quiet"),
            OsStr::new("--"),
            OsStr::new(source),
            partial.as_os_str(),
        ],
        credentials,
    )
    .await;
    if let Err(e) = cloned {
        let _ = tokio::fs::remove_dir_all(&partial).await;
        return Err(e);
    }
    tokio::fs::rename(&partial, &mirror).await.map_err(|e| format!("cannot rename the new mirror: {e}"))?;
    Ok(mirror)
}

/// The refs the source itself advertises (`git ls-remote`), in the form of [`refs`]: what a
/// mirror that is up to date holds. `HEAD` and the peeled `^{}` lines are not refs of their own.
pub(crate) async fn advertised_refs(source: &str, credentials: Option<Credentials<'_>>) -> Result<String, String> {
    let listed =
        git([OsStr::new("ls-remote"), OsStr::new("--quiet"), OsStr::new("--"), OsStr::new(source)], credentials)
            .await?;
    let mut lines: Vec<String> = listed
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(_, name)| name.starts_with("refs/") && !name.ends_with("^{}"))
        .map(|(object, name)| format!("{object} {name}\n"))
        .collect();
    lines.sort_unstable();
    Ok(lines.concat())
}

/// The refs of a repository (a mirror or a restored one).
pub(crate) async fn refs(repo: &Path) -> Result<Refs, String> {
    let lines = git(
        [
            OsStr::new("-C"),
            repo.as_os_str(),
            OsStr::new("for-each-ref"),
            OsStr::new("--format=%(objectname) %(refname)"),
        ],
        None,
    )
    .await?;
    let mut sorted: Vec<&str> = lines.lines().filter(|l| !l.is_empty()).collect();
    sorted.sort_unstable();
    let head = git(
        [OsStr::new("-C"), repo.as_os_str(), OsStr::new("symbolic-ref"), OsStr::new("--quiet"), OsStr::new("HEAD")],
        None,
    )
    .await
    .ok()
    .map(|h| h.trim().to_owned())
    .filter(|h| !h.is_empty());
    Ok(Refs { lines: sorted.iter().map(|l| format!("{l}\n")).collect(), head })
}

/// Writes a bundle of every ref of the mirror to `out`.
pub(crate) async fn bundle(mirror: &Path, out: &Path) -> Result<(), String> {
    git(
        [
            OsStr::new("-C"),
            mirror.as_os_str(),
            OsStr::new("bundle"),
            OsStr::new("create"),
            OsStr::new("--quiet"),
            out.as_os_str(),
            OsStr::new("--all"),
        ],
        None,
    )
    .await
    .map(|_| ())
}

/// Makes `dest` a working repository with the bundle's refs, `HEAD` on `head` and checked
/// out, and checks it with `git fsck`.
pub(crate) async fn restore(bundle: &Path, dest: &Path, head: Option<&str>) -> Result<(), String> {
    git([OsStr::new("init"), OsStr::new("--quiet"), dest.as_os_str()], None).await?;
    let d = dest.as_os_str();
    // Verified from inside the new repository: git needs one to read a bundle with.
    git(
        [OsStr::new("-C"), d, OsStr::new("bundle"), OsStr::new("verify"), OsStr::new("--quiet"), bundle.as_os_str()],
        None,
    )
    .await
    .map_err(|e| format!("the bundle does not verify: {e}"))?;
    git(
        [
            OsStr::new("-C"),
            d,
            OsStr::new("fetch"),
            OsStr::new("--quiet"),
            OsStr::new("--update-head-ok"),
            bundle.as_os_str(),
            OsStr::new("refs/*:refs/*"),
        ],
        None,
    )
    .await?;
    if let Some(head) = head {
        git([OsStr::new("-C"), d, OsStr::new("symbolic-ref"), OsStr::new("HEAD"), OsStr::new(head)], None).await?;
        git([OsStr::new("-C"), d, OsStr::new("reset"), OsStr::new("--quiet"), OsStr::new("--hard")], None).await?;
    }
    git([OsStr::new("-C"), d, OsStr::new("fsck"), OsStr::new("--full"), OsStr::new("--no-progress")], None)
        .await
        .map_err(|e| format!("the restored repository does not pass git fsck: {e}"))?;
    Ok(())
}
