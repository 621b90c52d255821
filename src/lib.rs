//! valerix-backup: daily, verified, restorable backups of the Valerix
//! PostgreSQL databases.
//!
//! Layers, top to bottom; an import points only down, or sideways within
//! a layer where docs/design.md ("Layers") allows it, and `tests/layers.rs`
//! holds it:
//!
//! 1. the binary (`main.rs`, `cli.rs`, `print.rs`): parse, call, print.
//! 2. [`ops`], [`agent`]:
//!    - [`ops`]: the commands' work (backup, verify, restore, list, status,
//!      prune, upload, audit, geo-restore, config check); options in,
//!      report out.
//!    - [`agent`]: the long-running scheduler; it calls `ops` as the CLI
//!      does and turns their reports into metrics and alerts. `ops` never
//!      imports it.
//! 3. the domain and its services (never `ops` or `agent`):
//!    - [`catalog`]: the local backup directory: names, manifests, lock,
//!      retention, atomic files.
//!    - [`pg`]: PostgreSQL tools as processes, the custom archive format,
//!      database operations.
//!    - [`pipeline`]: stream adapters (parallel gzip, hashing).
//!    - [`offsite`]: Azure Blob Storage: blob names, tiers, the lifecycle
//!      policy. Knows nothing of the local catalog; the blob client is
//!      [`storage`]'s Azure driver.
//!    - [`arm`]: Azure Resource Manager: a JSON client on azure_core's
//!      pipeline, long-running operations, typed resources. Never imports
//!      `catalog` or `offsite`.
//!    - [`azure`]: what `offsite` and `arm` share: the credential, retry
//!      options, error translation, redaction.
//! 4. [`config`], [`error`] (the error kinds and their exit statuses),
//!    [`schedule`] (the agent's cron table, parsed once when the config loads),
//!    [`ui`].

pub mod agent;
pub mod arm;
pub mod azure;
pub mod catalog;
pub mod config;
pub mod error;
pub mod offsite;
pub mod ops;
pub mod pg;
pub mod pipeline;
pub mod schedule;
pub mod storage;
pub mod ui;

pub use config::Config;
pub use error::{Error, Result};
