//! OpenPGP encryption and decryption while the bytes flow, with rPGP (the `pgp` crate):
//! pure Rust, so no gpg has to be installed, and its messages interoperate with gpg's.
//!
//! Both run on a blocking thread: rPGP's streaming API is `Read` in, `Write` out.

use std::io::{BufRead, Read, Write};
use std::path::Path;

use pgp::composed::{
    ArmorOptions, DecryptionOptions, Deserializable, Message, MessageBuilder, SignedPublicKey, SignedSecretKey, TheRing,
};
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::types::{KeyDetails, Password, Seipdv1ReadMode};

use crate::error::{CliError, Result};

/// The most a key file may be (keys are a few KiB; this only stops reading a wrong file).
const MAX_KEY_FILE: u64 = 1 << 20;

fn read_key_file(path: &Path) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).map_err(|e| CliError::local("open the key", path, e))?;
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE + 1).read_to_end(&mut bytes).map_err(|e| CliError::local("read the key", path, e))?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(CliError::usage(format!("{} is larger than a key file can be", path.display())));
    }
    Ok(bytes)
}

/// A recipient: an OpenPGP public key (certificate) that can encrypt.
#[derive(Debug)]
pub(crate) struct Recipient {
    cert: SignedPublicKey,
}

impl Recipient {
    /// Reads an ASCII-armored or binary public key and checks its self-signatures.
    pub(crate) fn load(path: &Path) -> Result<Self> {
        let bytes = read_key_file(path)?;
        let bad =
            |e: pgp::errors::Error| CliError::usage(format!("{} is not an OpenPGP public key: {e}", path.display()));
        let (cert, _) = SignedPublicKey::from_reader_single(bytes.as_slice()).map_err(bad)?;
        cert.verify_bindings().map_err(bad)?;
        let recipient = Recipient { cert };
        if !recipient.has_encryption_key() {
            return Err(CliError::usage(format!("the key in {} has no key that may encrypt", path.display())));
        }
        Ok(recipient)
    }

    /// The subkeys flagged for encryption (as gpg chooses), or else the primary key when
    /// its self-signatures flag it for encryption: a key its owner marked for signing only
    /// is never encrypted to, whatever its algorithm could do.
    fn has_encryption_key(&self) -> bool {
        self.encryption_subkeys().next().is_some() || self.primary_encrypts()
    }

    fn primary_encrypts(&self) -> bool {
        let details = &self.cert.details;
        self.cert.primary_key.algorithm().can_encrypt()
            && details.direct_signatures.iter().chain(details.users.iter().flat_map(|u| &u.signatures)).any(|sig| {
                let flags = sig.key_flags();
                flags.encrypt_comms() || flags.encrypt_storage()
            })
    }

    fn encryption_subkeys(&self) -> impl Iterator<Item = &pgp::composed::SignedPublicSubKey> {
        self.cert.public_subkeys.iter().filter(|sub| {
            sub.key.algorithm().can_encrypt()
                && sub.signatures.iter().any(|sig| {
                    let flags = sig.key_flags();
                    flags.encrypt_comms() || flags.encrypt_storage()
                })
        })
    }

    /// Encrypts everything `input` yields into `output` as one ASCII-armored OpenPGP
    /// message (SEIPD v1 with AES-256, which every gpg since 2.0 reads), streaming in
    /// partial packets: memory does not grow with the input.
    pub(crate) fn encrypt(&self, input: impl Read, output: impl Write) -> Result<()> {
        let mut rng = rand::thread_rng();
        let mut builder = MessageBuilder::from_reader("", input).seipd_v1(&mut rng, SymmetricKeyAlgorithm::AES256);
        let failed = |e: pgp::errors::Error| CliError::usage(format!("cannot encrypt: {e}"));
        let mut any = false;
        for sub in self.encryption_subkeys() {
            builder.encrypt_to_key(&mut rng, sub).map_err(failed)?;
            any = true;
        }
        if !any {
            builder.encrypt_to_key(&mut rng, &self.cert.primary_key).map_err(failed)?;
        }
        builder.to_armored_writer(&mut rng, ArmorOptions::default(), output).map_err(|e| match io_cause(&e) {
            // The reader's or writer's own error (the producer, the network) says more.
            Some(cause) => cause,
            None => failed(e),
        })
    }
}

/// The I/O error under an rPGP error, if that is what it is.
fn io_cause(e: &pgp::errors::Error) -> Option<CliError> {
    match e {
        pgp::errors::Error::IO { source, .. } => Some(read_failure_of_transfer(source)),
        _ => None,
    }
}

/// The transfer's own error when it failed (cut, or a size or digest that does not match),
/// otherwise the network's.
fn read_failure_of_transfer(source: &std::io::Error) -> CliError {
    match source.get_ref().and_then(|inner| inner.downcast_ref::<crate::pipe::TransferCut>()) {
        Some(cut) => cut.0.clone(),
        None => CliError::network(source),
    }
}

/// A secret key and its passphrase, to decrypt with.
#[derive(Debug)]
pub(crate) struct Decryptor {
    key: SignedSecretKey,
    passphrase: Password,
}

impl Decryptor {
    /// Reads an ASCII-armored or binary secret key.
    pub(crate) fn load(path: &Path, passphrase: Option<String>) -> Result<Self> {
        let bytes = read_key_file(path)?;
        let (key, _) = SignedSecretKey::from_reader_single(bytes.as_slice())
            .map_err(|e| CliError::usage(format!("{} is not an OpenPGP secret key: {e}", path.display())))?;
        let passphrase = passphrase.map(Password::from).unwrap_or_else(Password::empty);
        Ok(Decryptor { key, passphrase })
    }

    /// Decrypts the OpenPGP message (armored or binary) `input` yields into `output`, while
    /// it flows. The plaintext is released before the message's integrity check at its end
    /// (buffering would hold a whole backup in memory), so `output` must be a temporary
    /// place that is discarded when this fails: a failed check is
    /// [`CliError::Integrity`].
    pub(crate) fn decrypt<R: BufRead + std::fmt::Debug + Send>(&self, input: R, mut output: impl Write) -> Result<u64> {
        let (message, _) = Message::from_reader(input).map_err(|e| not_a_message(&e))?;
        let ring = TheRing {
            secret_keys: vec![&self.key],
            key_passwords: vec![&self.passphrase],
            decrypt_options: DecryptionOptions::new().set_seipdv1_read_mode(Seipdv1ReadMode::Streaming),
            ..Default::default()
        };
        let (mut message, _) = message.decrypt_the_ring(ring, true).map_err(|e| {
            CliError::usage(format!(
                "cannot decrypt with this key: {e} (a wrong passphrase, or a message to another key)"
            ))
        })?;
        if message.is_compressed() {
            message = message.decompress().map_err(|e| CliError::integrity(format!("cannot decompress: {e}")))?;
        }
        let mut buf = vec![0u8; 256 * 1024];
        let mut written = 0u64;
        loop {
            let n = match message.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_failure(e)),
            };
            output.write_all(&buf[..n]).map_err(|e| CliError::usage(format!("cannot write the plaintext: {e}")))?;
            written += n as u64;
        }
        Ok(written)
    }
}

fn not_a_message(e: &pgp::errors::Error) -> CliError {
    match io_cause(e) {
        Some(cause) => cause,
        None => CliError::integrity(format!("the download is not an OpenPGP message: {e}")),
    }
}

/// A read of the plaintext failed: the network under it (a cut transfer), or the message's
/// own check (a modification detected, a truncated message).
fn read_failure(e: std::io::Error) -> CliError {
    if let Some(cut) = e.get_ref().and_then(|inner| inner.downcast_ref::<crate::pipe::TransferCut>()) {
        return cut.0.clone();
    }
    CliError::integrity(format!("the OpenPGP message failed its integrity check: {e}"))
}
