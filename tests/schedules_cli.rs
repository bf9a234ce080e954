//! Schedules as a user meets them through the binary: the README's Monday,
//! `simulate --at`, and time zones that work with no tz files on disk (the
//! shipped image has none).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn example(ext: &str) -> PathBuf {
    root().join(format!("examples/traces/business-hours.{ext}"))
}

/// The binary, or with `hide_tz_files` the binary in a mount namespace where
/// the system tz directory is an empty one (as in the distroless image), so
/// only a database built into the binary can answer.
fn binary(hide_tz_files: Option<&Path>) -> Command {
    let bin = env!("CARGO_BIN_EXE_workerpool-operator");
    let system = Path::new("/usr/share/zoneinfo");
    match hide_tz_files {
        Some(empty) if system.exists() => {
            let mut cmd = Command::new("unshare");
            cmd.args(["--map-root-user", "--mount", "sh", "-c"])
                .arg(r#"mount --bind "$0" /usr/share/zoneinfo && exec "$@""#)
                .arg(empty)
                .arg(bin);
            cmd
        }
        _ => Command::new(bin),
    }
}

fn simulate(trace: &Path, extra: &[&str], tzdir: Option<&Path>) -> Output {
    let mut cmd = binary(tzdir);
    cmd.arg("simulate")
        .arg("-f")
        .arg(example("yaml"))
        .arg("--trace")
        .arg(trace)
        .args(extra);
    if let Some(dir) = tzdir {
        cmd.env("TZDIR", dir);
    }
    cmd.output().unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn recorded() -> String {
    std::fs::read_to_string(example("out.csv")).unwrap()
}

#[test]
fn the_monday_example_matches_its_recorded_output_and_the_readme() {
    let text = stdout(&simulate(&example("csv"), &[], None));
    assert_eq!(
        text,
        recorded(),
        "regenerate examples/traces/business-hours.out.csv if the change is intended"
    );
    // The README shows the header and every row with an event.
    let mut rows: Vec<&str> = text.lines().take(1).collect();
    rows.extend(text.lines().skip(1).filter(|l| !l.ends_with(',')));
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme
        .split("### A Monday with business hours")
        .nth(1)
        .expect("README has the business-hours section");
    let block = section
        .split("```")
        .skip(1)
        .step_by(2)
        .map(str::trim)
        .find(|b| b.starts_with("time,"))
        .expect("a code block of the output");
    assert_eq!(block, rows.join("\n"), "README's Monday is out of date");
    // The floor arrives with the window at 08:00 Berlin, the burst goes above
    // spec.maxReplicas (the window raises the ceiling), and the pool sleeps
    // again after the window and the cooldown.
    assert!(text.contains("2026-11-30T08:00:00+01:00,30,0,5,ScaledOut"));
    assert!(text.contains(",20,32,ScaledOut"));
    assert!(text.contains("ScaledToZero"));
}

#[test]
fn time_zones_need_no_tz_files_on_disk() {
    let empty = tempfile::tempdir().unwrap();
    // The namespace really hides the host's tz files (else this proves nothing).
    let probe = binary(Some(empty.path()))
        .arg("--version")
        .output()
        .expect("unshare (util-linux) runs the binary");
    assert!(
        probe.status.success(),
        "cannot hide /usr/share/zoneinfo: {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let text = stdout(&simulate(&example("csv"), &[], Some(empty.path())));
    assert_eq!(
        text,
        recorded(),
        "Europe/Berlin read differently without tz files"
    );
    // A zone that does not exist is still an error naming the field.
    let tmp = tempfile::tempdir().unwrap();
    let pool = tmp.path().join("pool.yaml");
    let yaml = std::fs::read_to_string(example("yaml")).unwrap();
    std::fs::write(&pool, yaml.replace("Europe/Berlin", "Europe/Atlantis")).unwrap();
    let out = binary(Some(empty.path()))
        .args(["simulate", "-f"])
        .arg(&pool)
        .arg("--trace")
        .arg(example("csv"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("spec.schedules[0].timeZone"), "{err}");
}

#[test]
fn at_gives_a_seconds_trace_its_wall_clock() {
    // The same Monday timed in seconds from 06:00 Berlin.
    let stamped = std::fs::read_to_string(example("csv")).unwrap();
    let mut seconds = String::from("time,invoices\n");
    for (i, line) in stamped.lines().skip(1).enumerate() {
        let value = line.split(',').nth(1).unwrap();
        seconds.push_str(&format!("{},{value}\n", i * 60));
    }
    let tmp = tempfile::tempdir().unwrap();
    let trace = tmp.path().join("monday.csv");
    std::fs::write(&trace, seconds).unwrap();
    let tail = |text: &str| -> Vec<String> {
        text.lines()
            .skip(1)
            .map(|l| l.split_once(',').unwrap().1.to_string())
            .collect()
    };
    let at = stdout(&simulate(&trace, &["--at", "2026-11-30T05:00:00Z"], None));
    assert_eq!(tail(&at), tail(&recorded()));
    // Without --at, time 0 is the Unix epoch: a Thursday, 1 January 1970,
    // 01:00 in Berlin, so the window opens at row 420 (08:00).
    let epoch = stdout(&simulate(&trace, &[], None));
    assert_ne!(tail(&epoch), tail(&recorded()));
    let opening = epoch.lines().find(|l| l.starts_with("25200,")).unwrap();
    assert!(opening.ends_with(",5,ScaledOut"), "{opening}");
    let before = epoch.lines().find(|l| l.starts_with("25140,")).unwrap();
    assert!(!before.ends_with(",5,ScaledOut"), "{before}");
    // --at with a timestamped trace, or a malformed --at, is a one-line error.
    for args in [vec!["--at", "2026-11-30T05:00:00Z"], vec!["--at", "monday"]] {
        let trace = if args[1] == "monday" {
            &trace
        } else {
            &example("csv")
        };
        let out = simulate(trace, &args, None);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn the_chart_shades_the_open_window() {
    let tmp = tempfile::tempdir().unwrap();
    let svg = tmp.path().join("monday.svg");
    stdout(&simulate(
        &example("csv"),
        &["--svg", svg.to_str().unwrap()],
        None,
    ));
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(
        chart.contains("schedule business-hours open from Mon 08:00"),
        "{chart}"
    );
    assert!(chart.contains("time (Europe/Berlin)"));
    assert!(chart.contains(">Mon 09:00<"));
}
