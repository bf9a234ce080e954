//! The commands that need no cluster: `crd`, `check`, `simulate` (and its chart), `convert`.

pub mod check;
pub mod closed_loop;
pub mod convert;
pub mod manifest;
pub mod simulate;
pub mod svg;
pub mod trace;
