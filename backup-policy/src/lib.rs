//! # backup-policy
//!
//! Who may do what, when and from where: users, access keys, roles, ACLs, passwords, scoped
//! tokens, backup windows, rate limits. (Being built; `backup-core` has the
//! [`backup_core::Authorizer`] trait and an allow-all implementation.)

#![deny(missing_docs)]

pub use backup_core::AllowAll;
