//! The bad-input corpus (tests/data/bad): every file says what must happen
//! to it — rejected by the CRD schema at apply (naming the field), rejected
//! by the operator's own validation, or accepted and reported at run time
//! (checked end to end by the controller tests). Nothing may panic.

mod support;

use support::bad_corpus::corpus;
use support::crd_schema::CrdSchema;
use workerpool_operator::cli::manifest;

#[test]
fn corpus_has_at_least_thirty_cases() {
    assert!(corpus().len() >= 30);
}

#[test]
fn schema_rejects_what_it_should_naming_the_field() {
    let crd = CrdSchema::workerpool();
    let mut failures = vec![];
    for c in corpus().iter().filter(|c| c.kind == "schema") {
        let obj: serde_json::Value = workerpool_operator::yaml::from_str(&c.text).unwrap();
        match crd.admit(&obj) {
            Ok(_) => failures.push(format!("{}: accepted by the CRD schema", c.file)),
            Err(errs) => {
                if !errs.iter().any(|e| e.contains(&c.arg)) {
                    failures.push(format!(
                        "{}: errors do not name {}: {errs:?}",
                        c.file, c.arg
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn operator_rejects_every_schema_or_operator_case_without_panic() {
    let crd = CrdSchema::workerpool();
    let mut failures = vec![];
    for c in corpus()
        .iter()
        .filter(|c| c.kind == "schema" || c.kind == "operator")
    {
        let result = std::panic::catch_unwind(|| manifest::parse(&c.text));
        match result {
            Err(_) => failures.push(format!("{}: panicked", c.file)),
            Ok(Ok(_)) => failures.push(format!("{}: accepted by the operator", c.file)),
            Ok(Err(e)) => {
                if c.kind == "operator" && !e.0.contains(&c.arg) {
                    failures.push(format!(
                        "{}: error does not name {}: {}",
                        c.file, c.arg, e.0
                    ));
                }
                if e.0.lines().count() != 1 {
                    failures.push(format!("{}: error is not one line: {}", c.file, e.0));
                }
            }
        }
        if c.kind == "operator" {
            let obj: serde_json::Value = workerpool_operator::yaml::from_str(&c.text).unwrap();
            if let Err(errs) = crd.admit(&obj) {
                failures.push(format!(
                    "{}: expected the schema to accept (operator-only check), got {errs:?}",
                    c.file
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn runtime_cases_pass_admission_and_validation() {
    let crd = CrdSchema::workerpool();
    for c in corpus().iter().filter(|c| c.kind == "runtime") {
        let obj: serde_json::Value = workerpool_operator::yaml::from_str(&c.text).unwrap();
        crd.admit(&obj)
            .unwrap_or_else(|e| panic!("{}: {e:?}", c.file));
        manifest::parse(&c.text).unwrap_or_else(|e| panic!("{}: {e}", c.file));
    }
}
