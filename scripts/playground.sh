#!/usr/bin/env bash
# The playground: the operator's real loop on one machine, no cluster.
# Builds the operator and the playground driver, then runs them: an
# emulated Kubernetes API server (kubeconfig path printed), a redis-server
# on a free 127.0.0.1 port, the operator, a WorkerPool applied with kubectl,
# bursts of Celery-shaped tasks and workers draining them.
# Ctrl-C stops everything it started. Flags go to the driver (--help).
# Needs: the Rust toolchain and redis-server (installed with apt-get if missing);
# kubectl is used when found ($KUBECTL, PATH, or .venv/bin/kubectl from
# scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

# PLAYGROUND_PROFILE=debug skips the release build (the test suite uses it).
profile="${PLAYGROUND_PROFILE:-release}"
flag=(--release)
if [ "$profile" = debug ]; then flag=(); fi

if ! command -v redis-server >/dev/null; then
  echo "playground.sh: installing redis-server with apt-get" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
  $sudo apt-get update -qq
  # policy-rc.d-less containers would otherwise try to start the service.
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $sudo apt-get install -y -qq --no-install-recommends redis-server >/dev/null
fi
cargo build -q "${flag[@]}" --bin workerpool-operator --example playground
exec "target/$profile/examples/playground" --operator "target/$profile/workerpool-operator" "$@"
