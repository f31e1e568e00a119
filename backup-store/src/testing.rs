//! Test support for this workspace and for other projects' tests (feature `testing`): the
//! services the tests need, reported as skipped by name when absent and a failure under
//! `CI=true`, and a real S3 server in-process.
//!
//! | helper | what |
//! |---|---|
//! | [`database_url`] | `TEST_DATABASE_URL`, or a named skip |
//! | [`fresh_schema`] | a random PostgreSQL schema name, so tests share one database |
//! | [`moto_url`] | `TEST_MOTO_URL` (moto's S3 server, which enforces Object Lock), or a named skip |
//! | [`azurite`] | `TEST_AZURITE_URL`, `TEST_AZURITE_CONTAINER` (the Azure Blob emulator), or a named skip |
//! | [`azurite_store_url`] | an `az://` URL that [`crate::open_store`] opens on Azurite, or a named skip |
//! | [`S3Server`] | s3s-fs on `127.0.0.1:0` with SigV4 keys, over a temporary folder |

mod azurite;
mod database;
mod moto;
mod s3;

pub use azurite::{AZURITE_ACCOUNT, AZURITE_KEY, Azurite, azurite, azurite_store_url};
pub use database::{database_url, fresh_schema, skipped};
pub use moto::{moto_url, smtp_python};
pub use s3::S3Server;
