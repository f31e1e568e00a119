//! Shared helpers of the integration tests: service URLs (skipped by name when absent, a
//! failure under CI=true) and an S3 server in-process.

#![allow(dead_code, unreachable_pub, unused_imports)]

pub mod s3;

mod database;
pub use database::*;
