#!/usr/bin/env bash
# Runs every check and test of the workspace, setting up what they need:
# formatting, clippy, the whole test suite (unit, integration, doc tests,
# trybuild) against a real PostgreSQL, and the rustdoc build.
#
# Services: ANNALS_TEST_DATABASE_URL (a libpq URL) is used when set;
# otherwise the local PostgreSQL on 127.0.0.1:5432 is used (started with
# pg_ctlcluster when it is installed but stopped); when neither exists the
# tests fall back to testcontainers, which needs Docker.
set -euo pipefail

cd "$(dirname "$0")/.."
# CI clones afresh; a target directory outside the clone keeps builds warm.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/annals/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

section() { printf '\n==> %s\n' "$*"; }

section "formatting"
cargo fmt --all -- --check
cargo fmt --manifest-path examples/bench/peer/Cargo.toml -- --check

section "clippy"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
# The bench's cqrs-es program, a workspace of its own so that its
# dependencies stay out of the builds above; compiled and linted here so
# that it cannot rot (annals-bench's peer suite runs it).
cargo clippy --manifest-path examples/bench/peer/Cargo.toml --all-targets --locked -- -D warnings

section "PostgreSQL"
if [ -z "${ANNALS_TEST_DATABASE_URL:-}" ]; then
    if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && command -v pg_ctlcluster >/dev/null; then
        version=$(ls /etc/postgresql | sort -V | tail -n 1)
        pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
        for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
    fi
    if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
        export ANNALS_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:5432/test"
    fi
fi
echo "ANNALS_TEST_DATABASE_URL=${ANNALS_TEST_DATABASE_URL:-<unset: testcontainers>}"

section "Kafka-protocol broker"
if [ -z "${ANNALS_TEST_KAFKA_BROKERS:-}" ]; then
    # tansu 0.6.0 from PyPI: Apache Kafka cannot be fetched on the project's
    # machines (docs/broker-notes.md). Stopped again when this script exits.
    scripts/kafka-broker.sh install
    export ANNALS_KAFKA_RUN_DIR="${ANNALS_KAFKA_RUN_DIR:-${TMPDIR:-/tmp}/annals-test-broker-$$}"
    ANNALS_TEST_KAFKA_BROKERS=$(scripts/kafka-broker.sh start | tail -n 1)
    export ANNALS_TEST_KAFKA_BROKERS
    trap 'scripts/kafka-broker.sh stop --hard >/dev/null 2>&1 || true' EXIT
fi
echo "ANNALS_TEST_KAFKA_BROKERS=$ANNALS_TEST_KAFKA_BROKERS"

section "tests"
cargo test --workspace --all-features --locked

section "book"
# The book's code is the annals-book crate, tested above; this renders the
# chapters, which include anchored parts of that code.
mdbook_version=0.5.4
mdbook_root="${ANNALS_TOOLS_DIR:-$HOME/.cache/annals/tools}/mdbook-$mdbook_version"
if ! "$mdbook_root/bin/mdbook" --version 2>/dev/null | grep -q "v$mdbook_version"; then
    cargo install mdbook --locked --version "$mdbook_version" \
        --no-default-features --features search --root "$mdbook_root"
fi
"$mdbook_root/bin/mdbook" build book
if grep -rl '{{#include' book/target/book --include '*.html' >/dev/null; then
    echo "the book has includes that did not resolve" >&2
    exit 1
fi

section "rustdoc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --locked

section "all checks passed"
