//! `workerpool-operator convert -f FILE`: KEDA ScaledObjects to WorkerPools.
//!
//! Reads every YAML document of the input; converts each `keda.sh/v1alpha1`
//! ScaledObject (using the TriggerAuthentications given beside it) into a
//! WorkerPool printed on stdout, in `mode: Shadow` unless asked for
//! `Active`, so it can run beside KEDA before taking over. Whatever has no
//! exact equivalent is a warning on stderr naming the field; nothing is
//! dropped silently. Exit 0 (also with warnings); 2 when the input is not a
//! ScaledObject or holds a trigger type that cannot be converted, and then
//! nothing is printed.

mod advanced;
mod annotations;
mod auth;
mod fields;
mod input;
mod prometheus;
mod redis_connection;
mod redis_lists;
mod redis_streams;
mod scaled_object;
mod source;
mod trigger;
mod triggers;
mod warnings;

use std::io::Read;
use std::path::Path;

pub use warnings::{ConvertError, Warning};

use crate::api::Mode;

/// The converted WorkerPools (YAML documents) and every warning.
#[derive(Debug)]
pub struct Conversion {
    pub yaml: String,
    pub warnings: Vec<String>,
}

/// Converts the text of one input (several documents allowed).
pub fn convert(text: &str, mode: Mode) -> Result<Conversion, ConvertError> {
    let input = input::read(text)?;
    let mut warnings: Vec<String> = input
        .skipped
        .iter()
        .map(|d| format!("warning: {d}: not a KEDA object; skipped"))
        .collect();
    let mut docs = Vec::new();
    for so in input.scaled_objects {
        let (pool, found) = scaled_object::convert(so, &input.auth, mode)?;
        let yaml = serde_yaml::to_string(&pool).map_err(|e| ConvertError::Read(format!("printing YAML: {e}")))?;
        docs.push(yaml);
        warnings.extend(found.iter().map(Warning::to_string));
    }
    Ok(Conversion {
        yaml: docs.join("---\n"),
        warnings,
    })
}

/// The command: reads `file` (`-` for stdin), prints WorkerPools on stdout
/// and warnings on stderr; returns the exit status.
pub fn run(file: &Path, active: bool) -> u8 {
    let mode = if active { Mode::Active } else { Mode::Shadow };
    let result = read(file).and_then(|text| convert(&text, mode));
    match result {
        Ok(c) => {
            print!("{}", c.yaml);
            for w in &c.warnings {
                eprintln!("{w}");
            }
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

fn read(file: &Path) -> Result<String, ConvertError> {
    let mut text = String::new();
    if file == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| ConvertError::Read(format!("reading stdin: {e}")))?;
        return Ok(text);
    }
    std::fs::read_to_string(file).map_err(|e| ConvertError::Read(format!("{}: {e}", file.display())))
}
