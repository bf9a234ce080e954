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

/// A YAML mapping as read from the input (keys are strings in every KEDA object).
type Mapping = serde_json::Map<String, serde_json::Value>;

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
        let yaml = crate::yaml::to_string(&pool)
            .map_err(|e| ConvertError::Read(format!("printing YAML: {e}")))?;
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
    std::fs::read_to_string(file)
        .map_err(|e| ConvertError::Read(format!("{}: {e}", file.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SO: &str = "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: w, namespace: shop}\nspec:\n  scaleTargetRef: {name: w}\n  triggers:\n";

    fn run(triggers: &str) -> Result<Conversion, ConvertError> {
        convert(&format!("{SO}{triggers}"), Mode::Shadow)
    }

    #[test]
    fn unknown_metadata_is_a_warning_never_dropped() {
        let c = run(
            "  - type: redis\n    metadata: {address: 'r:6379', listName: q, listLenght: '7'}\n",
        )
        .unwrap();
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("spec.triggers[0].metadata.listLenght"));
        assert!(
            c.yaml.contains("targetPerReplica: 5\n"),
            "the default, not 7"
        );
    }

    #[test]
    fn invalid_keda_values_are_errors_naming_the_field() {
        let cases = [
            ("  - type: redis\n    metadata: {address: 'r:6379', listName: q, listLength: '0'}\n", "listLength"),
            ("  - type: redis\n    metadata: {host: r, listName: q}\n", "metadata.port"),
            ("  - type: redis\n    metadata: {hosts: 'a,b', ports: '1', listName: q}\n", "ports"),
            ("  - type: redis-sentinel\n    metadata: {addresses: 'r:26379', listName: q}\n", "sentinelMaster"),
            ("  - type: prometheus\n    metadata: {serverAddress: 'prom:9090', query: up, threshold: '1'}\n", "serverAddress"),
            ("  - type: prometheus\n    metadata: {serverAddress: 'http://p', query: up, threshold: 'x'}\n", "threshold"),
            ("  - type: redis\n    metadata: {address: 'r:6379', listName: q, enableTLS: 'true'}\n    authenticationRef: {name: a}\n", "authenticationRef"),
        ];
        for (triggers, field) in cases {
            let result = run(triggers);
            if field == "authenticationRef" {
                let c = result.unwrap();
                assert!(
                    c.warnings.iter().any(|w| w.contains("not in the input")),
                    "{:?}",
                    c.warnings
                );
                continue;
            }
            let e = result.unwrap_err().to_string();
            assert!(e.contains(field), "{field}: {e}");
            assert_eq!(e.lines().count(), 1);
        }
    }

    #[test]
    fn tls_in_both_places_is_refused_as_keda_does() {
        let ta = "---\napiVersion: keda.sh/v1alpha1\nkind: TriggerAuthentication\nmetadata: {name: a, namespace: shop}\nspec:\n  secretTargetRef: [{parameter: tls, name: s, key: tls}]\n";
        let so = format!("{SO}  - type: redis\n    metadata: {{address: 'r:6379', listName: q, enableTLS: 'true'}}\n    authenticationRef: {{name: a}}\n{ta}");
        let e = convert(&so, Mode::Shadow).unwrap_err().to_string();
        assert!(e.contains("parameter tls") && e.contains("both"), "{e}");
    }
}
