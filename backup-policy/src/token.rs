//! Tokens: scoped JWTs registered as sessions in the catalog, so they can be listed and
//! revoked; verification fails closed.
//!
//! By job: [`key`] holds the key material and the JWT codec, [`claims`] the token types (what
//! a token says, what to ask for, what issuing and verifying give), [`rejection`] why a token
//! is refused, [`requester`] who acts on sessions, and [`service`] the [`TokenService`] that
//! issues, verifies and revokes through the catalog's session registry.

mod claims;
mod key;
mod rejection;
mod requester;
mod service;

pub use claims::{IssuedToken, TokenRequest, VerifiedToken};
pub use key::TokenKey;
pub use rejection::{Rejection, TokenRejection};
pub use requester::Requester;
pub use service::{DEFAULT_LIFETIME, DEFAULT_MAX_CHAIN, TokenService};
