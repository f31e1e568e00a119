//! The rules of names that manifests and values share: a user's, an access key's.

use crate::identity::AccessKey;

/// Why `name` cannot be a user's name, if it cannot.
pub(super) fn user_name_refusal(name: &str) -> Option<&'static str> {
    let refused = name.is_empty() || name.contains('$') || name.chars().any(char::is_control) || name.len() > 256;
    refused.then_some("a user name must be non-empty, at most 256 bytes, without '$' or control characters")
}

/// Why `name` cannot be the name of an access key next to `others`, if it cannot.
pub(super) fn access_key_refusal(name: &str, others: &[AccessKey]) -> Option<String> {
    if name.is_empty() || name.contains('$') {
        return Some("an access key name must be non-empty, without '$'".to_owned());
    }
    others.iter().any(|o| o.name == name).then(|| format!("access key {name:?} is defined twice"))
}
