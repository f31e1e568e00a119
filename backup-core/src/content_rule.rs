//! Content rules: checks on the first and last bytes of an upload, run while it streams.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use crate::error::{Error, Result};

/// The most leading or trailing bytes a rule may ask to see.
pub const MAX_RULE_WINDOW: usize = 64 * 1024;

/// A check of an upload's content by its first and last bytes, for example "must be an
/// OpenPGP message". The quota stream calls it in the same pass as the byte count: the head
/// as soon as enough bytes arrived (so a wrong upload stops early), the tail at the end.
///
/// Contract: pure, cheap, never panics; `head_len` and `tail_len` at most
/// [`MAX_RULE_WINDOW`].
pub trait ContentRule: Debug + Send + Sync + 'static {
    /// The name collections use to select it (`content_rule`).
    fn name(&self) -> &str;

    /// How many leading bytes [`ContentRule::check_head`] wants.
    fn head_len(&self) -> usize;

    /// How many trailing bytes [`ContentRule::check_tail`] wants.
    fn tail_len(&self) -> usize;

    /// Checks the first `min(head_len, total)` bytes. `complete` is true when they are the
    /// whole upload (it was shorter than `head_len`).
    ///
    /// # Errors
    /// The reason the content is refused.
    fn check_head(&self, head: &[u8], complete: bool) -> std::result::Result<(), String>;

    /// Checks the last `min(tail_len, total)` bytes of an upload of `total` bytes; `head` is
    /// what [`ContentRule::check_head`] saw, so the end can be checked against the form the
    /// start announced.
    ///
    /// # Errors
    /// The reason the content is refused.
    fn check_tail(&self, head: &[u8], tail: &[u8], total: u64) -> std::result::Result<(), String>;
}

/// The content rules an engine knows, by name.
#[derive(Debug, Clone, Default)]
pub struct ContentRules {
    by_name: BTreeMap<String, Arc<dyn ContentRule>>,
}

impl ContentRules {
    /// Registers (or replaces) a rule under its name.
    pub fn register(&mut self, rule: Arc<dyn ContentRule>) {
        self.by_name.insert(rule.name().to_owned(), rule);
    }

    /// The rule a collection names, if it names one.
    ///
    /// # Errors
    /// [`Error::InvalidSpec`] for an unknown name, listing the known ones.
    pub fn resolve(&self, name: Option<&str>) -> Result<Option<Arc<dyn ContentRule>>> {
        let Some(name) = name else { return Ok(None) };
        match self.by_name.get(name) {
            Some(rule) => Ok(Some(rule.clone())),
            None => Err(Error::InvalidSpec {
                field: "content_rule",
                reason: format!(
                    "unknown content rule {name:?}; known: {}",
                    if self.by_name.is_empty() {
                        "none".to_owned()
                    } else {
                        self.by_name.keys().cloned().collect::<Vec<_>>().join(", ")
                    }
                ),
            }),
        }
    }
}
