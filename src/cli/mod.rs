//! The commands that need no cluster: `crd`, `simulate` (and its chart).

pub mod manifest;
pub mod simulate;
pub mod svg;
pub mod trace;
