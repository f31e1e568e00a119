//! The OpenPGP content rule: uploads must be encrypted OpenPGP messages, armored or binary.

use backup_core::ContentRule;

const ARMOR_BEGIN: &[u8] = b"-----BEGIN PGP MESSAGE-----";
const ARMOR_END: &[u8] = b"-----END PGP MESSAGE-----";

/// Packet tags an encrypted message may start with (RFC 9580 §5): public-key and symmetric-key
/// encrypted session keys, symmetrically encrypted data (with and without integrity), AEAD.
const ENCRYPTED_START_TAGS: [u8; 5] = [1, 3, 9, 18, 20];

/// Requires uploads to be encrypted OpenPGP messages, checked while they stream:
///
/// - ASCII armor: the upload begins with `-----BEGIN PGP MESSAGE-----` (after optional white
///   space) and ends with `-----END PGP MESSAGE-----` (before optional white space), what
///   `gpg --armor` and backup-maker produce;
/// - binary: the first packet is a public-key or symmetric-key encrypted session key, or
///   encrypted data, with a valid header (what `gpg --encrypt` without `--armor` produces).
///
/// Plain text, empty bodies and anything else are refused with the reason. This is a format
/// check, not cryptography: it catches unencrypted backups sent by mistake.
///
/// ```
/// use backup_core::ContentRule;
/// use backup_policy::OpenPgpRule;
///
/// let rule = OpenPgpRule;
/// assert!(rule.check_head(b"-----BEGIN PGP MESSAGE-----\n\nhQEMA", false).is_ok());
/// assert!(rule.check_head(b"CREATE TABLE users (", false).is_err());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenPgpRule;

impl OpenPgpRule {
    /// The name collections use: `openpgp`.
    pub const NAME: &'static str = "openpgp";
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[n..]
}

fn trim_end(b: &[u8]) -> &[u8] {
    let n = b.iter().rev().take_while(|c| c.is_ascii_whitespace()).count();
    &b[..b.len() - n]
}

fn is_armored(head: &[u8]) -> bool {
    trim_start(head).starts_with(ARMOR_BEGIN)
}

/// Checks the first packet header of a binary message.
fn check_binary_head(head: &[u8], complete: bool) -> Result<(), String> {
    let first = head[0];
    if first & 0x80 == 0 {
        return Err("neither an ASCII-armored nor a binary OpenPGP message (unencrypted data?)".into());
    }
    let (tag, rest) = if first & 0x40 != 0 { (first & 0x3f, &head[1..]) } else { ((first >> 2) & 0x0f, &head[1..]) };
    if !ENCRYPTED_START_TAGS.contains(&tag) {
        return Err(format!(
            "an OpenPGP stream must start with an encrypted session key or encrypted data packet, not packet tag {tag}"
        ));
    }
    // The length field must be complete and describe a packet that is not empty.
    let need = if first & 0x40 != 0 {
        match rest.first() {
            None => 1,
            Some(0..=191) => 1,
            Some(192..=223) => 2,
            Some(224..=254) => {
                // A partial length: only data packets may be streamed that way.
                if !matches!(tag, 9 | 18 | 20) {
                    return Err(format!("packet tag {tag} cannot have a partial length"));
                }
                1
            }
            Some(255) => 5,
        }
    } else {
        match first & 0x03 {
            0 => 1,
            1 => 2,
            2 => 4,
            _ => 0, // indeterminate length, allowed for old-format data packets
        }
    };
    if rest.len() < need {
        return if complete { Err("the OpenPGP packet header is cut short".into()) } else { Ok(()) };
    }
    if need == 1 && rest[0] == 0 && first & 0x40 != 0 {
        return Err("the first OpenPGP packet is empty".into());
    }
    // Session key packets start with a version byte.
    let body = &rest[need..];
    if let Some(&version) = body.first() {
        let known = match tag {
            1 => matches!(version, 3 | 6),
            3 => matches!(version, 4..=6),
            18 => matches!(version, 1 | 2),
            20 => version == 1,
            _ => true,
        };
        if !known {
            return Err(format!("packet tag {tag} with unknown version {version}"));
        }
    }
    Ok(())
}

impl ContentRule for OpenPgpRule {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn head_len(&self) -> usize {
        64
    }

    fn tail_len(&self) -> usize {
        64
    }

    fn check_head(&self, head: &[u8], complete: bool) -> Result<(), String> {
        if trim_start(head).is_empty() {
            return Err("the upload is empty; an encrypted OpenPGP message was expected".into());
        }
        if is_armored(head) {
            return Ok(());
        }
        if trim_start(head).starts_with(b"-----BEGIN PGP") {
            return Err("an armored OpenPGP block that is not a message (a key or a signature?)".into());
        }
        check_binary_head(head, complete)
    }

    fn check_tail(&self, head: &[u8], tail: &[u8], total: u64) -> Result<(), String> {
        if total == 0 {
            return Err("the upload is empty; an encrypted OpenPGP message was expected".into());
        }
        // The head decided the form; an armored message must also end as one. A binary
        // message has no trailer to check.
        if is_armored(head) && !trim_end(tail).ends_with(ARMOR_END) {
            return Err("the ASCII-armored message does not end with -----END PGP MESSAGE-----".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: &[u8]) -> Result<(), String> {
        let rule = OpenPgpRule;
        let head = &body[..body.len().min(rule.head_len())];
        let tail = &body[body.len().saturating_sub(rule.tail_len())..];
        rule.check_head(head, body.len() <= rule.head_len())?;
        rule.check_tail(head, tail, body.len() as u64)
    }

    const ARMORED: &[u8] =
        b"-----BEGIN PGP MESSAGE-----\n\nhQEMA3xvF0PXNrk1AQf/X5Q9a7Z+abc\n=abcd\n-----END PGP MESSAGE-----\n";

    #[test]
    fn armored_messages_pass() {
        check(ARMORED).unwrap();
        let mut crlf = b"\r\n".to_vec();
        crlf.extend_from_slice(ARMORED);
        crlf.extend_from_slice(b"\r\n\r\n");
        check(&crlf).unwrap();
    }

    #[test]
    fn binary_messages_pass() {
        // New format PKESK (tag 1), length 268 (two octets: 192 + ...), version 3.
        let mut pkesk = vec![0xc1, 0xc1, 0x4c, 0x03];
        pkesk.extend(std::iter::repeat_n(0x42, 400));
        check(&pkesk).unwrap();
        // Old format PKESK: 0x85 = tag 1, two-octet length.
        let mut old = vec![0x85, 0x01, 0x0c, 0x03];
        old.extend(std::iter::repeat_n(0xaa, 300));
        check(&old).unwrap();
        // SKESK v4 (symmetric, gpg -c).
        let mut skesk = vec![0xc3, 0x0d, 0x04];
        skesk.extend(std::iter::repeat_n(0x17, 200));
        check(&skesk).unwrap();
    }

    #[test]
    fn everything_else_is_refused_with_a_reason() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b"   \n", "empty"),
            (b"CREATE TABLE users (id int);\n", "unencrypted"),
            (b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n", "not a message"),
            (b"-----BEGIN PGP MESSAGE-----\n\nhQEMA3xvF0PXNrk1AQf/X5Q9a7Z+", "does not end"),
            (&[0xcb, 0x10, 0x62], "packet tag 11"), // literal data: not encrypted
            (&[0xc2, 0x10, 0x04], "packet tag 2"),  // a signature
            (&[0xc1, 0x10, 0x09], "unknown version"),
            (&[0xc1], "cut short"),
            (&[0xc1, 0x00], "empty"),
            (&[0xc1, 0xe0, 0x03], "partial length"),
        ];
        for (body, reason) in cases {
            let e = check(body).unwrap_err();
            assert!(e.contains(reason), "{:?}: {e}", String::from_utf8_lossy(body));
        }
    }
}
