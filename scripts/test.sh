#!/usr/bin/env bash
# The whole test suite, runnable on a fresh machine (Rust, Python 3 with pip, apt): installs what
# the tests need, then checks formatting and lints, then runs every crate's tests.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-s3.sh
scripts/setup-tools.sh
.tools/node_modules/.bin/buf lint
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# The deployed build (without the test-support feature the workspace build turns on).
cargo clippy -p haplane-server --bins -- -D warnings
cargo test --workspace -- --test-threads "${HAPLANE_TEST_THREADS:-4}"
# The chaos run's short profile on both stores; each prints its one summary line.
cargo run -q -p haplane-tests --bin chaos -- --profile ci --store dir
cargo run -q -p haplane-tests --bin chaos -- --profile ci --store s3
