#!/usr/bin/env bash
# Builds and tests the TypeScript client (clients/typescript, npm package @haplane/client):
# npm ci, code generation with buf (no protoc), tsc, then node --test: unit tests of the view
# filter, the follower's decisions and the typed errors, and end-to-end tests that start real
# haplane nodes on 127.0.0.1 (temporary directory stores, poll 100 ms, heartbeat timeout 1 s).
#
# Needs Node.js >= 20.10 with npm (scripts/setup-tools.sh installs it in .venv, which comes first
# on PATH here); every npm package, buf included, comes
# pinned from package-lock.json. The node binary is $HAPLANE_BIN, by default target/debug/haplane,
# built here with cargo if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export PATH="$root/.venv/bin:$PATH"

command -v node >/dev/null 2>&1 || { echo "test-typescript-client: node is not installed (scripts/setup-tools.sh installs it)" >&2; exit 1; }
command -v npm >/dev/null 2>&1 || { echo "test-typescript-client: npm is not installed (scripts/setup-tools.sh installs it)" >&2; exit 1; }
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 10) ? 0 : 1)'; then
  echo "test-typescript-client: Node.js >= 20.10 is needed, found $(node --version)" >&2
  exit 1
fi

if [ -z "${HAPLANE_BIN:-}" ]; then
  export HAPLANE_BIN="$root/target/debug/haplane"
  if [ ! -x "$HAPLANE_BIN" ]; then
    echo "test-typescript-client: building $HAPLANE_BIN"
    cargo build -p haplane-server --bin haplane
  fi
fi
[ -x "$HAPLANE_BIN" ] || { echo "test-typescript-client: HAPLANE_BIN=$HAPLANE_BIN is not an executable" >&2; exit 1; }

cd clients/typescript
npm ci --no-audit --no-fund
npm run generate
npm run build
npm test
