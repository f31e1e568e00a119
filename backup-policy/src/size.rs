//! Sizes as backup-repository writes them: `1M` is 1024², `K`/`KB`, case-insensitive,
//! fractions allowed, a bare number is bytes.

use parse_size::Config;

use crate::error::{Error, Result};

/// Parses a size: `512`, `1K`, `1KB`, `1.5M`, `10G`, `2t` (binary multiples, like
/// backup-repository's `labstack/gommon/bytes`). `KiB`-style units are accepted too; negative
/// sizes are refused.
///
/// ```
/// use backup_policy::parse_size;
///
/// assert_eq!(parse_size("1M")?, 1 << 20);
/// assert_eq!(parse_size("10m")?, 10 << 20);
/// assert_eq!(parse_size("1.5K")?, 1536);
/// assert_eq!(parse_size("50G")? * 30, 1500 * (1 << 30));
/// assert!(parse_size("-1M").is_err());
/// # Ok::<(), backup_policy::Error>(())
/// ```
///
/// # Errors
/// [`backup_core::Error::InvalidInput`] for anything else.
pub fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    if t.starts_with('-') {
        return Err(Error::invalid("size", format!("{t:?} is negative")));
    }
    // Only backup-repository's form, `digits[.digits][ ][unit]`: parse-size reads much more
    // (separators, exponents) and 1.1.0 overflows (a panic with overflow checks, a wrong value
    // without) when the digits it accumulates pass u64::MAX. 19 significant digits always fit.
    let number_end = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(number_end);
    let unit = unit.strip_prefix(' ').unwrap_or(unit);
    let valid_unit = unit.is_empty()
        || unit.eq_ignore_ascii_case("b")
        || (unit.len() <= 3
            && unit.chars().next().is_some_and(|c| "KMGTPEkmgtpe".contains(c))
            && matches!(&unit[1..].to_ascii_lowercase()[..], "" | "b" | "ib"));
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    let significant = int.trim_start_matches('0').len() + frac.len();
    if int.is_empty() || (number.contains('.') && frac.is_empty()) || frac.contains('.') || !valid_unit {
        return Err(Error::invalid(
            "size",
            format!("{:?} is not a number with an optional K, M, G, T, P or E", truncate(t)),
        ));
    }
    if significant > 19 {
        return Err(Error::invalid("size", format!("{:?} has too many digits", truncate(t))));
    }
    // "1M" must be 1024², not a millibyte nor 10⁶: binary multiples, "B" optional.
    Config::new().with_binary().parse_size(t).map_err(|e| {
        Error::invalid("size", format!("{:?}: {e}; expected a number with an optional K, M, G, T, P or E", truncate(t)))
    })
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_repository_sizes() {
        let table: &[(&str, u64)] = &[
            ("0", 0),
            ("512", 512),
            ("512B", 512),
            ("1K", 1024),
            ("1KB", 1024),
            ("1kb", 1024),
            ("1M", 1 << 20),
            ("1MB", 1 << 20),
            ("1.5M", 3 << 19),
            ("10M", 10 << 20),
            ("2G", 2 << 30),
            ("1T", 1 << 40),
            ("1 M", 1 << 20),
            ("0000000000000000000000001K", 1024),
        ];
        for (text, bytes) in table {
            assert_eq!(parse_size(text).unwrap(), *bytes, "{text}");
        }
        // The fuzzer's find: digits past u64::MAX made parse-size overflow.
        let overflow = "18446744073709551615".to_owned() + "7";
        for bad in [
            "",
            "M",
            "1X",
            "-5M",
            "1..5M",
            "1.",
            ".5M",
            "ten",
            &"9".repeat(40),
            &overflow,
            "99999999999999999999K",
            "0.18446744073709551615516",
            "1_000",
            "1e3",
            "1  M",
            "1MiBB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }
}
