//! Key material and the JWT codec: [`TokenKey`] (HS256 secrets, Ed25519 PEM pairs), the keys
//! a service signs and checks with ([`KeyRing`]), and jsonwebtoken's crypto provider.

use std::fmt;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use sha2::Digest as _;

use super::claims::Claims;
use super::rejection::{Rejection, TokenRejection};
use crate::error::{Error, Result};

/// The longest token accepted, in bytes.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The shortest HS256 secret accepted, in bytes.
const MIN_SECRET_LEN: usize = 16;

/// Selects jsonwebtoken's crypto provider (aws-lc-rs) once per process. jsonwebtoken panics
/// at the first use when it cannot tell which provider to use (for example when feature
/// unification enables two), so it is installed explicitly.
fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means another provider is installed already, which is fine.
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    });
}

/// A key to sign or check tokens with, and its id (`kid`) for rotation.
#[derive(Clone)]
pub struct TokenKey {
    kid: String,
    algorithm: Algorithm,
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKey").field("kid", &self.kid).field("algorithm", &self.algorithm).finish_non_exhaustive()
    }
}

impl TokenKey {
    /// An HS256 key; its id is derived from the secret unless given.
    ///
    /// # Errors
    /// [`backup_core::Error::InvalidInput`] for a secret under 16 bytes.
    pub fn hs256(secret: &[u8], kid: Option<&str>) -> Result<Self> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(Error::invalid("JWT secret", format!("must be at least {MIN_SECRET_LEN} bytes long")));
        }
        let kid = kid.map_or_else(|| hex::encode(&sha2::Sha256::digest(secret)[..6]), str::to_owned);
        Ok(TokenKey {
            kid,
            algorithm: Algorithm::HS256,
            encoding: Some(EncodingKey::from_secret(secret)),
            decoding: DecodingKey::from_secret(secret),
        })
    }

    /// An Ed25519 (EdDSA) key pair from PEM files (`openssl genpkey -algorithm ed25519` and
    /// `openssl pkey -pubout`), to sign and check. The pair is checked at once: a signature
    /// made with the private key must verify with the public one.
    ///
    /// # Errors
    /// [`backup_core::Error::InvalidInput`] for keys that do not parse, or do not belong
    /// together.
    pub fn ed25519_pem(kid: &str, private_pem: &[u8], public_pem: &[u8]) -> Result<Self> {
        install_crypto_provider();
        let encoding = EncodingKey::from_ed_der(&ed25519_private_der(private_pem)?);
        let decoding = DecodingKey::from_ed_der(&ed25519_public_key(public_pem)?);
        let probe = b"backup-policy key check";
        let signature = jsonwebtoken::crypto::sign(probe, &encoding, Algorithm::EdDSA)
            .map_err(|e| Error::invalid("Ed25519 private key", e.to_string()))?;
        match jsonwebtoken::crypto::verify(&signature, probe, &decoding, Algorithm::EdDSA) {
            Ok(true) => {}
            _ => return Err(Error::invalid("Ed25519 key pair", "the public key does not match the private key")),
        }
        Ok(TokenKey { kid: kid.to_owned(), algorithm: Algorithm::EdDSA, encoding: Some(encoding), decoding })
    }

    /// An Ed25519 public key only: checks tokens another instance signed.
    ///
    /// # Errors
    /// [`backup_core::Error::InvalidInput`] for a key that does not parse.
    pub fn ed25519_public_pem(kid: &str, public_pem: &[u8]) -> Result<Self> {
        let decoding = DecodingKey::from_ed_der(&ed25519_public_key(public_pem)?);
        Ok(TokenKey { kid: kid.to_owned(), algorithm: Algorithm::EdDSA, encoding: None, decoding })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

/// The PKCS#8 document of an Ed25519 private key in PEM (`PRIVATE KEY`), which
/// jsonwebtoken's signer reads itself.
fn ed25519_private_der(pem_text: &[u8]) -> Result<Vec<u8>> {
    let what = "Ed25519 private key";
    let pem = pem::parse(pem_text).map_err(|e| Error::invalid(what, e.to_string()))?;
    if pem.tag() != "PRIVATE KEY" {
        return Err(Error::invalid(what, format!("a PEM `PRIVATE KEY` (PKCS#8), not `{}`", pem.tag())));
    }
    Ok(pem.into_contents())
}

/// The DER of an Ed25519 `SubjectPublicKeyInfo` is always these 12 bytes (SEQUENCE,
/// AlgorithmIdentifier with OID 1.3.101.112 and no parameters, BIT STRING of 33 bytes with
/// no unused bits) and then the 32-byte key (RFC 8410 §4).
const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// The 32 bytes of an Ed25519 public key in PEM (`PUBLIC KEY`), as jsonwebtoken's verifier
/// takes it.
fn ed25519_public_key(pem_text: &[u8]) -> Result<Vec<u8>> {
    let what = "Ed25519 public key";
    let pem = pem::parse(pem_text).map_err(|e| Error::invalid(what, e.to_string()))?;
    if pem.tag() != "PUBLIC KEY" {
        return Err(Error::invalid(what, format!("a PEM `PUBLIC KEY`, not `{}`", pem.tag())));
    }
    match pem.contents().strip_prefix(&ED25519_SPKI_PREFIX[..]) {
        Some(key) if key.len() == 32 => Ok(key.to_vec()),
        _ => Err(Error::invalid(what, "not an Ed25519 SubjectPublicKeyInfo (RFC 8410)")),
    }
}

/// The keys of a service: one signs, it and the retired ones check (key rotation). The JWT
/// codec: claims in, a signed token out, and back, with every check that needs no catalog.
#[derive(Debug, Clone)]
pub(super) struct KeyRing {
    signing: TokenKey,
    retired: Vec<TokenKey>,
}

impl KeyRing {
    /// Signs with `signing`.
    ///
    /// # Errors
    /// [`backup_core::Error::InvalidInput`] when `signing` cannot sign (a public key only).
    pub(super) fn new(signing: TokenKey) -> Result<Self> {
        install_crypto_provider();
        if signing.encoding.is_none() {
            return Err(Error::invalid("signing key", format!("key {} has no private part", signing.kid)));
        }
        Ok(KeyRing { signing, retired: Vec::new() })
    }

    /// Also checks tokens signed with `retired`.
    pub(super) fn accept(&mut self, retired: TokenKey) {
        self.retired.push(retired);
    }

    /// A token of `claims`, signed with the signing key and carrying its id.
    pub(super) fn sign(&self, claims: &Claims) -> Result<String> {
        let mut header = Header::new(self.signing.algorithm);
        header.kid = Some(self.signing.kid.clone());
        let key = self.signing.encoding.as_ref().ok_or_else(|| Error::internal("signing key without private part"))?;
        jsonwebtoken::encode(&header, claims, key).map_err(|e| Error::internal(format!("signing: {e}")))
    }

    fn key_for(&self, kid: Option<&str>) -> Option<&TokenKey> {
        match kid {
            // Tokens without a key id were signed with the current key (as backup-repository's).
            None => Some(&self.signing),
            Some(kid) => std::iter::once(&self.signing).chain(&self.retired).find(|k| k.kid == kid),
        }
    }

    /// The checks that need no catalog: size, header, key, algorithm, signature, expiry.
    pub(super) fn decode(&self, token: &str, now: DateTime<Utc>) -> std::result::Result<Claims, TokenRejection> {
        use Rejection::*;
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenRejection::new(Malformed, "the token is too long"));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| TokenRejection::new(Malformed, format!("malformed token: {e}")))?;
        let key = self
            .key_for(header.kid.as_deref())
            .ok_or_else(|| TokenRejection::new(BadSignature, "the token was signed with an unknown key"))?;
        if header.alg != key.algorithm {
            return Err(TokenRejection::new(BadAlgorithm, format!("algorithm {:?} is not accepted", header.alg)));
        }
        let mut validation = Validation::new(key.algorithm);
        // Expiry is checked against the service's clock below, not the system's.
        validation.validate_exp = false;
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation).map_err(|e| {
            let kind = match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => BadSignature,
                _ => Malformed,
            };
            TokenRejection::new(kind, format!("invalid token: {e}"))
        })?;
        if data.claims.exp <= now.timestamp() {
            return Err(TokenRejection::new(Expired, "the token expired"));
        }
        Ok(data.claims)
    }
}
