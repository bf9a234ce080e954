#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian/Ubuntu machine that has only the
# Rust toolchain and Python 3 with pip: installs what is missing
# (redis-server, prometheus and ruby-sidekiq from apt, the Python tools in
# .venv, BullMQ in tests/node with npm ci), starts a Redis on 127.0.0.1,
# runs `cargo test`, and stops what it started.
# Tests that need their own servers (Prometheus with a config they write, a
# Redis they kill, a TLS Redis) start them from the same installed binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

# The real Kubernetes control plane (tests/real_control_plane.rs, and any
# test with WP_KUBE=real) is built from Go modules into a cache outside the
# repository: tens of minutes cold, nothing when the pinned versions have
# not changed. It builds in the background while the rest is installed and
# compiled; the tests that start it wait for it (a lock), and a failed build
# fails this script with the command and its output.
needs_control_plane=""
if [ $# -eq 0 ] || [ "${WP_KUBE:-}" = real ] || [[ " $* " == *real_control_plane* ]]; then
  needs_control_plane=1
fi
control_plane_pid=""
if [ -n "$needs_control_plane" ]; then
  command -v go >/dev/null || {
    echo "test.sh: no 'go' on PATH; the real control plane is built with Go (see README)" >&2
    exit 1
  }
  mkdir -p "$root/.test-servers"
  scripts/control-plane.sh build >/dev/null 2>"$root/.test-servers/control-plane-build.log" &
  control_plane_pid=$!
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
# Sentinel tests run Debian's redis-sentinel next to redis-server.
command -v redis-sentinel >/dev/null || missing+=(redis-sentinel)
command -v prometheus >/dev/null || missing+=(prometheus)
command -v openssl >/dev/null || missing+=(openssl)
# Sidekiq (and Ruby with it), pinned to Debian's build: tests/sources_sidekiq.rs counts its
# queues, and the scale-in tests run it as real workers.
sidekiq_version=6.4.1+dfsg-1
sidekiq_installed() { dpkg-query -W -f='${Version}' ruby-sidekiq 2>/dev/null; }
[ "$(sidekiq_installed)" = "$sidekiq_version" ] || missing+=("ruby-sidekiq=$sidekiq_version")
# BullMQ's tests drive the real BullMQ on Node (the machine's, else Debian's).
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing ${missing[*]} with apt-get" >&2
  $sudo apt-get update -qq
  # policy-rc.d-less containers would otherwise try to start the services.
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$(sidekiq_installed)" != "$sidekiq_version" ]; then
  echo "test.sh: ruby-sidekiq $sidekiq_version is not installed (found '$(sidekiq_installed)')" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! cmp -s tests/requirements.txt .venv/.requirements.txt; then
  echo "test.sh: installing Python tools into .venv" >&2
  .venv/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
  cp tests/requirements.txt .venv/.requirements.txt
fi
# arq pins a redis client older than Celery's: it gets a venv of its own.
if [ ! -x .venv-arq/bin/python ]; then
  python3 -m venv .venv-arq
fi
if ! cmp -s tests/requirements-arq.txt .venv-arq/.requirements.txt; then
  echo "test.sh: installing arq into .venv-arq" >&2
  .venv-arq/bin/pip install -q --disable-pip-version-check -r tests/requirements-arq.txt
  cp tests/requirements-arq.txt .venv-arq/.requirements.txt
fi
# BullMQ and its Redis client, exactly as tests/node/package-lock.json pins
# them; a failed install fails this script.
if ! cmp -s tests/node/package-lock.json tests/node/node_modules/.installed-lock.json; then
  echo "test.sh: installing BullMQ into tests/node (npm ci)" >&2
  (cd tests/node && npm ci --no-audit --no-fund --loglevel=error)
  cp tests/node/package-lock.json tests/node/node_modules/.installed-lock.json
fi
export PATH="$root/.venv/bin:$PATH"
export PYTHON="$root/.venv/bin/python"
export KUBECTL="$root/.venv/bin/kubectl"
export PYTHON_ARQ="$root/.venv-arq/bin/python"

state="$root/.test-servers"
mkdir -p "$state"
export REDIS_PORT="${REDIS_PORT:-16379}"
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
started_redis=""
stop() {
  if [ -n "$started_redis" ] && [ -f "$state/redis.pid" ]; then
    kill "$(cat "$state/redis.pid")" 2>/dev/null || true
  fi
}
trap stop EXIT
if ! redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize yes --pidfile "$state/redis.pid" --logfile "$state/redis.log" --dir "$state"
  started_redis=1
  for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

control_plane_built() {
  [ -n "$control_plane_pid" ] || return 0
  if ! wait "$control_plane_pid"; then
    echo "test.sh: building the real control plane FAILED:" >&2
    cat "$root/.test-servers/control-plane-build.log" >&2
    return 1
  fi
  cat "$root/.test-servers/control-plane-build.log" >&2
  control_plane_pid=""
}

# No arguments: everything. With arguments (e.g. `--test e2e_controller`),
# exactly the targets they name.
status=0
if [ $# -eq 0 ]; then
  cargo test --workspace --all-targets || status=$?
else
  cargo test --workspace "$@" || status=$?
fi
control_plane_built || status=1
exit $status
