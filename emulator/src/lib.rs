//! A Kubernetes API server emulator for tests: an in-memory HTTP/1.1
//! server speaking the real wire protocol for the subset the operator and
//! kubectl use. Test support only; never part of the shipped binary.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let emu = kube_emulator::Emulator::start().await?;
//! let client = emu.client()?;
//! emu.faults().fail_next(Some(kube_emulator::Verb::Patch), "/scale", 409, 1);
//! # drop(client);
//! # Ok(()) }
//! ```

mod apply;
mod connections;
mod controllers;
mod crd;
mod discovery;
mod emulator;
mod events;
mod faults;
mod fields;
mod handler;
mod kubeconfig;
mod objects;
mod openapi;
mod paging;
mod patch;
mod protobuf;
mod render;
mod requests;
mod resources;
mod router;
mod scale;
mod selectors;
mod server;
mod state;
mod status;
mod store;
mod structural;
mod table;
mod validation;
mod watch;
mod workloads;

pub use connections::Connections;
pub use emulator::{Emulator, Gvr};
pub use faults::Faults;
pub use requests::{RequestRecord, Requests, WriteRecord};
pub use router::Verb;
pub use state::Config;
pub use status::{ApiError, Cause};
