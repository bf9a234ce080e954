//! Shared test support (each integration test includes what it uses).
#![allow(dead_code)]

pub mod bad_corpus;
pub mod cluster;
pub mod control_plane;
pub mod crd_schema;
pub mod frameworks;
pub mod operator_process;
pub mod prometheus;
pub mod real_api;
pub mod redis;
pub mod topology;
