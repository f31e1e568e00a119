//! A version's metadata in a catalog's row, the same in SQLite and PostgreSQL: a JSON object
//! in a text column, or NULL for none.

/// The column's value for `metadata`.
pub(crate) fn metadata_text(metadata: &backup_core::Metadata) -> Option<String> {
    (!metadata.is_empty()).then(|| serde_json::to_string(metadata).unwrap_or_default())
}

/// The metadata a column holds.
pub(crate) fn metadata_from(text: Option<String>) -> Result<backup_core::Metadata, serde_json::Error> {
    text.map_or_else(|| Ok(backup_core::Metadata::new()), |t| serde_json::from_str(&t))
}
