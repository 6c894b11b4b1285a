#!/usr/bin/env bash
# Installs the S3-compatible server the tests use, moto, into the project venv .venv; idempotent.
# The tests start it through scripts/moto_serial.py, which makes its conditional writes atomic.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv 2>/dev/null || {
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv .venv
  }
fi
if [ ! -x .venv/bin/moto_server ]; then
  .venv/bin/pip install -q --disable-pip-version-check 'moto[server]==5.2.5'
fi
echo "setup-s3: $(pwd)/.venv/bin/moto_server"
