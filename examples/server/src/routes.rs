//! The HTTP routes.

pub(crate) mod auth;
pub(crate) mod collections;
pub(crate) mod health;
pub(crate) mod openapi;
pub(crate) mod retention;
pub(crate) mod schemas;
pub(crate) mod versions;
