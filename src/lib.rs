//! valerix-backup: daily, verified, restorable backups of the Valerix
//! PostgreSQL databases.
//!
//! Layers, top to bottom (nothing imports upwards):
//! - [`agent`]: the long-running scheduler; it calls `ops` as the CLI does
//!   and turns their reports into metrics and alerts.
//! - [`ops`]: the commands' work (backup, verify, restore, list, status,
//!   prune, upload, audit, geo-restore, config check); options in, report
//!   out.
//! - [`catalog`]: the local backup directory: names, manifests, lock,
//!   retention, atomic files.
//! - [`pg`]: PostgreSQL tools as processes, the custom archive format,
//!   database operations.
//! - [`pipeline`]: stream adapters (parallel gzip, hashing).
//! - [`offsite`]: Azure Blob Storage: blob names, tiers, the blob client,
//!   the lifecycle policy. Knows nothing of the local catalog.
//! - [`arm`]: Azure Resource Manager: a JSON client on azure_core's
//!   pipeline and long-running operations.
//! - [`config`], [`error`], [`ui`].

pub mod agent;
pub mod arm;
pub mod catalog;
pub mod config;
pub mod error;
pub mod offsite;
pub mod ops;
pub mod pg;
pub mod pipeline;
pub mod storage;
pub mod ui;

pub use config::Config;
pub use error::{Error, Result};
