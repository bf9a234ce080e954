//! Shared test support (each integration test includes what it uses).
#![allow(dead_code)]

pub mod cluster;
pub mod crd_schema;
pub mod frameworks;
pub mod prometheus;
pub mod redis;
pub mod topology;
