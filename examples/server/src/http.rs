//! HTTP plumbing: connections and their limits, the caller of a request, the JSON envelope
//! of refusals, and the middleware every request passes. Routes live in [`crate::api`] and
//! [`crate::ui`].

pub(crate) mod caller;
pub(crate) mod json;
pub(crate) mod linger;
pub(crate) mod middleware;
pub(crate) mod serve;
