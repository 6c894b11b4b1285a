#!/usr/bin/env bash
# The whole test suite, runnable on a fresh machine (Rust, Python 3 with pip, apt): installs what
# the tests need, then checks formatting and lints, then runs every crate's tests.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-s3.sh
scripts/setup-tools.sh
.tools/node_modules/.bin/buf lint
# The wire contract stays compatible with the last release (its image is kept in proto/releases/).
.tools/node_modules/.bin/buf breaking --against "$(ls proto/releases/*.binpb | sort -V | tail -1)"
# Go clients generate from buf.gen.yaml (the protos' go_package): messages and gRPC stubs.
.tools/node_modules/.bin/buf generate
for file in ha entity; do
  test -s "gen/go/haplane/v1/$file.pb.go" && test -s "gen/go/haplane/v1/${file}_grpc.pb.go"
done
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# The deployed build (without the test-support feature the workspace build turns on).
cargo clippy -p haplane-server --bins -- -D warnings
# The contract crate and the SDK package and build as crates.io would have them (the SDK against
# the contract crate just packaged, so no --no-verify is needed).
cargo publish --dry-run --quiet -p haplane -p haplane-sdk
cargo test --workspace -- --test-threads "${HAPLANE_TEST_THREADS:-4}"
# The clients of other languages, against live nodes (the binary the tests above built).
scripts/test-typescript-client.sh
scripts/test-python-client.sh
# The chaos run's short profile on both stores; each prints its one summary line.
cargo run -q -p haplane-tests --bin chaos -- --profile ci --store dir
cargo run -q -p haplane-tests --bin chaos -- --profile ci --store s3
# The Debian package: build, install, run as its user, purge.
scripts/test-deb.sh
