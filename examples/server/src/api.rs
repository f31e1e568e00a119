//! The API's routes (backup-repository's and ours), by resource, and the JSON shapes they
//! answer with. The router that serves them is [`crate::app`].

pub(crate) mod audit;
pub(crate) mod auth;
pub(crate) mod collections;
pub(crate) mod health;
pub(crate) mod idempotency;
pub(crate) mod model;
pub(crate) mod openapi;
pub(crate) mod replicas;
pub(crate) mod retention;
pub(crate) mod schemas;
pub(crate) mod versions;
