//! workerpool-operator: autoscale background workers from queue depth.
//!
//! - [`api`]: the `WorkerPool` resource and its validation;
//! - [`decision`]: the scaling math, pure;
//! - [`cli`]: the `crd`, `simulate` and `check` commands.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod api;
pub mod cli;
pub mod controller;
pub mod decision;
pub mod runtime;
pub mod sources;
pub mod text;
pub mod yaml;
