//! Passwords: argon2id hashes in PHC strings, read also in backup-repository's stored form.
//!
//! backup-repository stores `base64(PHC)`, and inside its PHC string the salt and hash are in
//! padded standard base64, which strict PHC parsers refuse. Both forms are read here; new
//! hashes are written as plain PHC strings (or in backup-repository's form, on request).

use std::fmt;

use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD, STANDARD_NO_PAD};
use base64::engine::{DecodePaddingMode, general_purpose};
use sha2::Digest as _;
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};

/// The parameters new hashes get: argon2id, 64 MiB, one pass, four lanes, 32-byte hash.
pub const TARGET: HashParams =
    HashParams { algorithm: Argon2Kind::Argon2id, memory_kib: 64 * 1024, passes: 1, lanes: 4, hash_len: 32 };

/// The most memory a stored hash may ask for (a manifest must not exhaust the server).
pub(crate) const MAX_MEMORY_KIB: u32 = 1024 * 1024;

/// Standard base64 that accepts padding or its absence.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Which argon2 variant a hash uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Argon2Kind {
    /// argon2id (the recommended one).
    Argon2id,
    /// argon2i.
    Argon2i,
    /// argon2d.
    Argon2d,
}

impl Argon2Kind {
    fn ident(self) -> &'static str {
        match self {
            Argon2Kind::Argon2id => "argon2id",
            Argon2Kind::Argon2i => "argon2i",
            Argon2Kind::Argon2d => "argon2d",
        }
    }

    fn algorithm(self) -> Algorithm {
        match self {
            Argon2Kind::Argon2id => Algorithm::Argon2id,
            Argon2Kind::Argon2i => Algorithm::Argon2i,
            Argon2Kind::Argon2d => Algorithm::Argon2d,
        }
    }
}

/// The cost parameters of a hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HashParams {
    /// The variant.
    pub algorithm: Argon2Kind,
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub passes: u32,
    /// Lanes.
    pub lanes: u32,
    /// Hash length in bytes.
    pub hash_len: usize,
}

impl HashParams {
    /// Whether these are weaker than `target` in any way (a hash to upgrade at the next login).
    pub fn weaker_than(&self, target: &HashParams) -> bool {
        self.algorithm != target.algorithm
            || self.memory_kib < target.memory_kib
            || self.passes < target.passes
            || self.hash_len < target.hash_len
    }
}

/// An argon2 hash: parameters, salt and hash.
#[derive(Clone, PartialEq, Eq)]
pub struct Argon2Hash {
    params: HashParams,
    version: u32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

impl fmt::Debug for Argon2Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the hash itself in logs.
        f.debug_struct("Argon2Hash")
            .field("params", &self.params)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// A password as stored: an argon2 hash, or none (the account cannot log in by password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredPassword {
    /// An argon2 hash.
    Argon2(Argon2Hash),
    /// No password set: every attempt fails (in constant time all the same).
    Disabled,
}

impl StoredPassword {
    /// Reads a stored password: a PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`), or
    /// backup-repository's form, the base64 of one.
    ///
    /// ```
    /// use backup_policy::StoredPassword;
    ///
    /// // backup-repository's stored form of "admin", from its example Secret.
    /// let stored = StoredPassword::parse("JGFyZ29uMmlkJHY9MTkkbT02NTUzNix0PTEscD00JHpuVy9IT2Y4Q3RkdStvNSttYlR2REE9PSRaZlVpRGl2QWV2T2RZNndKYWJBb0FQdmM1a1hsemxDNkg2OFY2dGVmNUY0PQ==")?;
    /// assert!(stored.verify(b"admin"));
    /// assert!(!stored.verify(b"Admin"));
    /// # Ok::<(), backup_policy::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`backup_core::Error::InvalidInput`] naming what is wrong; never the secret itself.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        if text.starts_with("$argon2") {
            return parse_phc(text).map(StoredPassword::Argon2);
        }
        let decoded = LENIENT
            .decode(text)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .filter(|s| s.starts_with("$argon2"))
            .ok_or_else(|| Error::invalid("password hash", "not an argon2 PHC string, nor the base64 of one"))?;
        parse_phc(decoded.trim()).map(StoredPassword::Argon2)
    }

    /// Hashes a new password with [`TARGET`] parameters and a random salt. Slow on purpose
    /// (tens of milliseconds, 64 MiB): call it on a blocking thread.
    ///
    /// # Errors
    /// [`backup_core::Error::Internal`] if the hasher refuses the parameters (it does not for [`TARGET`]).
    pub fn hash(password: &[u8]) -> Result<Self> {
        let salt = argon2::password_hash::generate_salt();
        let hash = derive(TARGET, 0x13, password, &salt)?;
        Ok(StoredPassword::Argon2(Argon2Hash { params: TARGET, version: 0x13, salt: salt.to_vec(), hash }))
    }

    /// A short fingerprint of the stored form: it changes whenever the password (or just its
    /// hash) changes, and tells nothing about the password. Sessions record the fingerprint of
    /// the credential their login proved, so a changed password ends them.
    pub fn fingerprint(&self) -> String {
        match self.to_phc() {
            Some(phc) => hex::encode(&sha2::Sha256::digest(phc.as_bytes())[..12]),
            None => "disabled".to_owned(),
        }
    }

    /// Checks a password in constant time with respect to its content. Slow on purpose: call
    /// it on a blocking thread. A disabled password spends the same time and says no.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            StoredPassword::Argon2(h) => match derive(h.params, h.version, password, &h.salt) {
                Ok(computed) => computed.ct_eq(&h.hash).into(),
                Err(_) => false,
            },
            StoredPassword::Disabled => {
                let _ = dummy().verify(password);
                false
            }
        }
    }

    /// Whether this hash is weaker than what new hashes get (upgrade it after the next
    /// successful login).
    pub fn needs_upgrade(&self) -> bool {
        match self {
            StoredPassword::Argon2(h) => h.params.weaker_than(&TARGET) || h.version != 0x13,
            StoredPassword::Disabled => false,
        }
    }

    /// The parameters, for an argon2 hash.
    pub fn params(&self) -> Option<HashParams> {
        match self {
            StoredPassword::Argon2(h) => Some(h.params),
            StoredPassword::Disabled => None,
        }
    }

    /// The PHC string (salt and hash in unpadded base64, as the PHC format says).
    pub fn to_phc(&self) -> Option<String> {
        match self {
            StoredPassword::Argon2(h) => Some(phc(h, &STANDARD_NO_PAD)),
            StoredPassword::Disabled => None,
        }
    }

    /// backup-repository's stored form: the base64 of a PHC string whose salt and hash are
    /// in padded base64 (what its `--encode-password` prints).
    pub fn to_backup_repository_form(&self) -> Option<String> {
        match self {
            StoredPassword::Argon2(h) => Some(STANDARD.encode(phc(h, &STANDARD))),
            StoredPassword::Disabled => None,
        }
    }
}

/// A hash to verify against when there is nothing to verify (an unknown user or key), so that
/// the answer takes as long as for a known one.
pub(crate) fn dummy() -> &'static StoredPassword {
    static DUMMY: std::sync::OnceLock<StoredPassword> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        StoredPassword::Argon2(Argon2Hash {
            params: TARGET,
            version: 0x13,
            salt: vec![0x5a; 16],
            hash: vec![0; TARGET.hash_len],
        })
    })
}

fn derive(params: HashParams, version: u32, password: &[u8], salt: &[u8]) -> Result<Vec<u8>> {
    let version = Version::try_from(version).map_err(|e| Error::invalid("password hash", e.to_string()))?;
    let p = Params::new(params.memory_kib, params.passes, params.lanes, Some(params.hash_len))
        .map_err(|e| Error::invalid("password hash", format!("parameters: {e}")))?;
    let mut out = vec![0u8; params.hash_len];
    Argon2::new(params.algorithm.algorithm(), version, p)
        .hash_password_into(password, salt, &mut out)
        .map_err(|e| Error::invalid("password hash", e.to_string()))?;
    Ok(out)
}

fn phc(h: &Argon2Hash, b64: &general_purpose::GeneralPurpose) -> String {
    format!(
        "${}$v={}$m={},t={},p={}${}${}",
        h.params.algorithm.ident(),
        h.version,
        h.params.memory_kib,
        h.params.passes,
        h.params.lanes,
        b64.encode(&h.salt),
        b64.encode(&h.hash)
    )
}

fn parse_phc(text: &str) -> Result<Argon2Hash> {
    let bad = |why: &str| Error::invalid("password hash", why.to_owned());
    // "", "argon2id", "v=19", "m=..,t=..,p=..", salt, hash
    let parts: Vec<&str> = text.split('$').collect();
    let (ident, version, params, salt, hash) = match parts.as_slice() {
        ["", ident, version, params, salt, hash] => (*ident, Some(*version), *params, *salt, *hash),
        ["", ident, params, salt, hash] => (*ident, None, *params, *salt, *hash),
        _ => return Err(bad("expected $argon2id$v=19$m=…,t=…,p=…$salt$hash")),
    };
    let algorithm = match ident {
        "argon2id" => Argon2Kind::Argon2id,
        "argon2i" => Argon2Kind::Argon2i,
        "argon2d" => Argon2Kind::Argon2d,
        _ => return Err(bad("the algorithm is not argon2id, argon2i or argon2d")),
    };
    let version = match version {
        None => 0x10,
        Some(v) => v.strip_prefix("v=").and_then(|n| n.parse::<u32>().ok()).ok_or_else(|| bad("bad version field"))?,
    };
    let (mut m, mut t, mut p) = (None, None, None);
    for kv in params.split(',') {
        let (k, v) = kv.split_once('=').ok_or_else(|| bad("bad parameter field"))?;
        let v: u32 = v.parse().map_err(|_| bad("bad parameter value"))?;
        match k {
            "m" => m = Some(v),
            "t" => t = Some(v),
            "p" => p = Some(v),
            _ => return Err(bad("unknown parameter")),
        }
    }
    let (Some(memory_kib), Some(passes), Some(lanes)) = (m, t, p) else { return Err(bad("m, t and p are required")) };
    if memory_kib > MAX_MEMORY_KIB {
        return Err(bad("memory cost above 1 GiB"));
    }
    let salt = LENIENT.decode(salt).map_err(|_| bad("the salt is not base64"))?;
    let hash = LENIENT.decode(hash).map_err(|_| bad("the hash is not base64"))?;
    if salt.len() < 8 || hash.len() < 4 || hash.len() > 1024 {
        return Err(bad("salt or hash of a wrong length"));
    }
    let params = HashParams { algorithm, memory_kib, passes, lanes, hash_len: hash.len() };
    // Refuse parameters the hasher would refuse, now rather than at every login.
    Params::new(memory_kib, passes, lanes, Some(hash.len())).map_err(|e| bad(&format!("parameters: {e}")))?;
    Version::try_from(version).map_err(|_| bad("unsupported version"))?;
    Ok(Argon2Hash { params, version, salt, hash })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// From `backup-repository-examples/.../backup-repository-passwords.yaml`.
    const ADMIN: &str = "JGFyZ29uMmlkJHY9MTkkbT02NTUzNix0PTEscD00JHpuVy9IT2Y4Q3RkdStvNSttYlR2REE9PSRaZlVpRGl2QWV2T2RZNndKYWJBb0FQdmM1a1hsemxDNkg2OFY2dGVmNUY0PQ==";
    const ADMIN_ACCESS_KEY_1: &str = "JGFyZ29uMmlkJHY9MTkkbT02NTUzNix0PTEscD00JERzUzlPTzFOc0JVREhvR1RmQ01wemc9PSRrcXh4bFliS3A4Um81MXZEb0FQaUdBeFhkNTgrY1ZzdERyZ3p3NG16bjFVPQ==";

    #[test]
    fn backup_repository_example_hashes_verify() {
        let admin = StoredPassword::parse(ADMIN).unwrap();
        assert!(admin.verify(b"admin"));
        assert!(!admin.verify(b"test"));
        let key = StoredPassword::parse(ADMIN_ACCESS_KEY_1).unwrap();
        assert!(key.verify(b"test"));
        assert!(!key.verify(b"admin"));
        assert!(!admin.needs_upgrade(), "backup-repository's parameters are ours");
    }

    #[test]
    fn new_hashes_round_trip_in_both_forms() {
        let h = StoredPassword::hash(b"s3cret").unwrap();
        let phc = h.to_phc().unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=65536,t=1,p=4$"), "{phc}");
        assert!(!phc.rsplit('$').take(2).any(|part| part.contains('=')), "PHC base64 has no padding: {phc}");
        assert!(StoredPassword::parse(&phc).unwrap().verify(b"s3cret"));
        let theirs = h.to_backup_repository_form().unwrap();
        assert!(StoredPassword::parse(&theirs).unwrap().verify(b"s3cret"));
        assert_ne!(StoredPassword::hash(b"s3cret").unwrap(), h, "random salts");
    }

    #[test]
    fn weaker_hashes_ask_for_an_upgrade() {
        let weak = "$argon2i$v=19$m=4096,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
        assert!(StoredPassword::parse(weak).unwrap().needs_upgrade());
    }

    #[test]
    fn garbage_is_refused_without_echoing_it() {
        for bad in [
            "",
            "hashed",
            "$argon2id$v=19$m=65536$c2FsdA$aGFzaA",
            "$scrypt$x$y$z",
            "$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
        ] {
            let e = StoredPassword::parse(bad).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput, "{bad:?}");
            if !bad.is_empty() {
                assert!(!e.to_string().contains(bad), "{e}");
            }
        }
        assert!(!StoredPassword::Disabled.verify(b""), "a disabled password never verifies");
    }
}
