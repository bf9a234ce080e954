//! The bad-input corpus (tests/data/bad): each file's first line says what
//! must happen to it (`# expect: KIND ARG`).

use std::path::PathBuf;

pub struct Case {
    pub file: String,
    /// "schema" (rejected at apply), "operator" (rejected by the operator's
    /// own validation) or "runtime" (accepted, reported while running).
    pub kind: String,
    /// What the error must name (a field path for schema cases).
    pub arg: String,
    pub text: String,
}

pub fn corpus() -> Vec<Case> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/bad");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let first = text.lines().next().unwrap_or_default();
            let expect = first
                .strip_prefix("# expect: ")
                .unwrap_or_else(|| panic!("{}: no `# expect:` line", p.display()));
            let (kind, arg) = expect.split_once(' ').unwrap();
            Case {
                file: p.file_name().unwrap().to_string_lossy().into(),
                kind: kind.into(),
                arg: arg.into(),
                text,
            }
        })
        .collect()
}
