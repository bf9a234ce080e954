//! The operator's Kubernetes side: the watches, the poll engine and the
//! writers, and the one place where Kubernetes I/O happens.

pub mod context;
pub mod engine;
pub mod error;
pub mod events;
pub mod hpas;
pub mod pods;
pub mod pool_metrics;
pub mod prepare;
pub mod rbac;
pub mod reconcile;
pub mod restore;
pub mod run;
pub mod secrets;
pub mod spare_busy;
pub mod status;
pub mod status_memory;
pub mod status_writer;
pub mod target;
pub mod target_cache;
pub mod targets;
pub mod watched_pool;

pub use context::{Context, Settings};

/// A map looked up on every poll (see `foldhash` in Cargo.toml).
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub use error::{Error, Result};
pub use run::{Caches, Scope};
