#!/usr/bin/env bash
# Builds the Python client (clients/python) as a wheel into target/clients/python/dist, installs
# only that wheel into a fresh venv target/clients/python/venv (pip brings grpcio, protobuf and
# googleapis-common-protos from PyPI), and runs the client's tests (unit, and end to end against
# real nodes: $HAPLANE_BIN, default target/debug/haplane) with that venv's python from a
# directory where the source tree is not importable, so the installed wheel is what is tested.
#
#   scripts/test-python-client.sh [-k PATTERN]...
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/target/clients/python
started=$SECONDS

export HAPLANE_BIN=${HAPLANE_BIN:-$root/target/debug/haplane}
if [ ! -x "$HAPLANE_BIN" ]; then
  echo "test-python-client: building $HAPLANE_BIN"
  cargo build -p haplane-server --bin haplane
fi

# A fresh venv: it will hold nothing but the wheel and what the wheel depends on.
rm -rf "$out/venv"
python3 -m venv "$out/venv"

# The wheel: an in-tree build (the build hook reads ../../proto), stubs generated at build time
# by the grpcio-tools that pyproject.toml pins, in pip's isolated build environment. The project
# venv's pip builds it when there is one, else the fresh venv's (isolation leaves it untouched).
py=$out/venv/bin/python
[ -x .venv/bin/python ] && py=.venv/bin/python
rm -rf "$out/dist" clients/python/build clients/python/haplane_client.egg-info
mkdir -p "$out/dist"
echo "test-python-client: building the wheel"
"$py" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$out/dist" clients/python
rm -rf clients/python/build clients/python/haplane_client.egg-info
wheels=("$out"/dist/haplane_client-*.whl)
[ ${#wheels[@]} -eq 1 ] || { echo "test-python-client: expected one wheel, found ${wheels[*]}" >&2; exit 1; }
wheel=${wheels[0]}
"$py" - "$wheel" <<'EOF'
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
needed = [f"haplane_client/_gen/haplane/v1/{m}.py" for m in ("ha_pb2", "ha_pb2_grpc", "entity_pb2", "entity_pb2_grpc")]
needed += [f"haplane_client/{p}__init__.py" for p in ("", "_gen/", "_gen/haplane/", "_gen/haplane/v1/")]
needed += ["haplane_client/client.py", "haplane_client/view_filter.py", "haplane_client/py.typed"]
missing = [n for n in needed if n not in names]
if missing:
    sys.exit(f"test-python-client: the wheel lacks {missing}")
print(f"test-python-client: {sys.argv[1]} holds {len(names)} files, the generated stubs among them")
EOF

"$out/venv/bin/python" -m pip install --quiet --disable-pip-version-check "$wheel"
"$out/venv/bin/python" -m pip list --disable-pip-version-check 2>/dev/null | grep -Ei '^(haplane-client|grpcio|protobuf|googleapis-common-protos) '

# Run from an empty directory: only the installed package is importable (run.py's folder holds
# only the tests, and it prints where haplane_client came from).
workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
cd "$workdir"
"$out/venv/bin/python" -c '
import sys, haplane_client
path = haplane_client.__file__
sys.exit(0 if "/site-packages/" in path else f"haplane_client imported from {path}, not the installed wheel")'
status=0
GRPC_VERBOSITY=ERROR PYTHONDONTWRITEBYTECODE=1 "$out/venv/bin/python" "$root/clients/python/tests/run.py" "$@" || status=$?
echo "test-python-client: done in $((SECONDS - started)) s (exit $status)"
exit $status
