#!/usr/bin/env bash
# The Debian package, end to end: builds it with cargo-deb (`cargo deb -p haplane-server`, output
# under target/debian/), checks its contents, installs it (twice: the reinstall / upgrade path),
# checks the user, the state directory and the unit, runs the installed /usr/bin/haplane as user
# haplane on a free loopback port until it is MASTER, stops it gracefully, then purges the package
# and checks that nothing of it is left. Needs root (or sudo), dpkg, dpkg-dev (dpkg-shlibdeps for
# the Depends), cargo-deb, adduser, curl; systemd-analyze is used when present (no running
# systemd is needed). Cleans up after itself, on failure too. Prints one summary line.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
pkg=haplane
unit=/usr/lib/systemd/system/haplane.service
# deb-systemd-helper (init-system-helpers) enables the unit at install, with or without systemd.
wants=/etc/systemd/system/multi-user.target.wants/haplane.service
# Written into the state directory right after `dpkg -i`: a package left installed with it is
# this script's own leftover (a killed run) and may be purged; any other install is refused.
marker=/var/lib/haplane/.test-deb-leftover

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "test-deb: needs root or sudo" >&2; exit 1; }
  sudo="sudo"
fi
as_root() { $sudo "$@"; }
# The installed node's user, with a clean environment (as systemd would give it: no HAPLANE_*
# variables of the caller's leak in). setpriv and env exec, so the PID is the node's.
as_haplane() {
  as_root setpriv --reuid=haplane --regid=haplane --init-groups \
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/var/lib/haplane LANG=C.UTF-8 "$@"
}

checks=0
ok() { checks=$((checks + 1)); }
fail() {
  echo "test-deb: FAILED: $*" >&2
  exit 1
}
installed() { [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)" = "ii " ]; }
package_present() { dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" >/dev/null 2>&1 \
  && [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg")" != "un " ] \
  && [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg")" != "pn " ]; }

for tool in cargo dpkg dpkg-deb curl setpriv; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed"
done
cargo deb --version >/dev/null 2>&1 || fail "cargo-deb is not installed (cargo install cargo-deb --locked)"

# Refuse to touch a real installation (its purge would delete /var/lib/haplane and the user).
if package_present; then
  if as_root test -e "$marker"; then
    echo "test-deb: purging the package a killed earlier run left installed"
    as_root dpkg --purge "$pkg" >/dev/null
  else
    fail "package $pkg is already installed here; this test installs and purges it (with /var/lib/haplane): purge it first"
  fi
fi
if getent passwd haplane >/dev/null || getent group haplane >/dev/null; then
  fail "a user or group haplane exists without the package; this test creates and deletes it: remove it first"
fi

tmp=""
node_pid=""
we_installed=0
cleanup() {
  local status=$?
  set +e
  if [ -n "$node_pid" ] && [ -d "/proc/$node_pid" ]; then
    as_root kill -TERM "$node_pid" 2>/dev/null
    for _ in $(seq 1 100); do [ -d "/proc/$node_pid" ] || break; sleep 0.1; done
    as_root kill -KILL "$node_pid" 2>/dev/null
    wait "$node_pid" 2>/dev/null
  fi
  if [ "$status" -ne 0 ] && [ -n "$tmp" ]; then
    for log in "$tmp/node.out" "$tmp/node.err"; do
      [ -s "$log" ] && { echo "--- $log (last 30 lines)" >&2; tail -n 30 "$log" >&2; }
    done
  fi
  if [ "$we_installed" -eq 1 ] && package_present; then
    as_root dpkg --purge "$pkg" >/dev/null 2>&1 || echo "test-deb: cleanup: dpkg --purge $pkg failed" >&2
  fi
  [ -n "$tmp" ] && as_root rm -rf "$tmp"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- build --------------------------------------------------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/haplane-test-deb.XXXXXX")
build_started=$SECONDS
deb=$(cargo deb -p haplane-server --locked 2>"$tmp/build.log" | tail -n 1) \
  || { cat "$tmp/build.log" >&2; fail "cargo deb -p haplane-server"; }
build_seconds=$((SECONDS - build_started))
case "$deb" in
  */target/debian/haplane_*.deb | */debian/haplane_*.deb) ;;
  *) fail "cargo deb printed no .deb path under target/debian/ (got: $deb)" ;;
esac
[ -f "$deb" ] || fail "$deb does not exist"
ok
deb_size=$(stat -c %s "$deb")

# --- contents -----------------------------------------------------------------------------------
dpkg-deb -c "$deb" >"$tmp/contents"
expect_entry() { # mode path
  grep -Eq "^$1 (root/root|0/0) +[0-9]+ [0-9-]+ [0-9:]+ \.$2\$" "$tmp/contents" \
    || fail "dpkg-deb -c: no $1 root-owned entry .$2"
  ok
}
expect_entry -rwxr-xr-x /usr/bin/haplane
expect_entry -rw-r--r-- "$unit"
expect_entry -rw-r--r-- /etc/haplane/haplane.toml
expect_entry -rw------- /etc/default/haplane
expect_entry -rw-r--r-- /usr/share/doc/haplane/copyright
dpkg-deb --info "$deb" conffiles >"$tmp/conffiles"
for f in /etc/haplane/haplane.toml /etc/default/haplane; do
  grep -qx "$f" "$tmp/conffiles" || fail "conffiles lacks $f"
  ok
done
for field in Maintainer Section Priority Depends; do
  [ -n "$(dpkg-deb -f "$deb" "$field")" ] || fail "control field $field is empty"
  ok
done
# libc6 comes from `$auto` (dpkg-shlibdeps, package dpkg-dev): without it cargo-deb only warns.
depends=$(dpkg-deb -f "$deb" Depends)
case "$depends" in *adduser*libc6* | *libc6*adduser*) ;; *) fail "Depends is '$depends': want adduser and libc6 (is dpkg-dev installed?)" ;; esac
ok
for script in postinst prerm postrm; do
  dpkg-deb --info "$deb" "$script" >"$tmp/$script" || fail "no $script in the package"
  ! grep -q '#DEBHELPER#' "$tmp/$script" || fail "$script still holds #DEBHELPER#"
  sh -n "$tmp/$script" || fail "$script: shell syntax"
  ok
done

# --- install, twice -----------------------------------------------------------------------------
check_installed() { # what
  installed || fail "$1: package not installed"
  [ -x /usr/bin/haplane ] || fail "$1: no /usr/bin/haplane"
  [ -f "$unit" ] || fail "$1: no $unit"
  getent passwd haplane >/dev/null || fail "$1: no user haplane"
  getent group haplane >/dev/null || fail "$1: no group haplane"
  [ "$(id -gn haplane)" = haplane ] || fail "$1: haplane's primary group is $(id -gn haplane)"
  local uid shell
  uid=$(id -u haplane)
  [ "$uid" -lt 1000 ] || fail "$1: haplane has uid $uid, not a system user"
  shell=$(getent passwd haplane | cut -d: -f7)
  case "$shell" in */nologin | */false) ;; *) fail "$1: haplane has login shell $shell" ;; esac
  [ "$(stat -c '%U:%G %a' /var/lib/haplane)" = "haplane:haplane 750" ] \
    || fail "$1: /var/lib/haplane is $(stat -c '%U:%G %a' /var/lib/haplane), not haplane:haplane 750"
  [ "$(stat -c '%U:%G %a' /etc/default/haplane)" = "root:root 600" ] \
    || fail "$1: /etc/default/haplane is $(stat -c '%U:%G %a' /etc/default/haplane)"
  if command -v deb-systemd-helper >/dev/null 2>&1; then
    [ -L "$wants" ] || fail "$1: the unit is not enabled ($wants)"
  fi
  ok
}
we_installed=1
as_root dpkg -i "$deb" >"$tmp/dpkg-i.log" 2>&1 || { cat "$tmp/dpkg-i.log" >&2; fail "dpkg -i"; }
as_root touch "$marker"
check_installed "first dpkg -i"
uid_first=$(id -u haplane)
# An operator's edit of a conffile survives a reinstall.
as_root sh -c 'echo "# edited by test-deb" >> /etc/haplane/haplane.toml'
as_root dpkg -i "$deb" >"$tmp/dpkg-i2.log" 2>&1 || { cat "$tmp/dpkg-i2.log" >&2; fail "second dpkg -i"; }
check_installed "second dpkg -i"
[ "$(id -u haplane)" = "$uid_first" ] || fail "second dpkg -i changed haplane's uid"
grep -q '^# edited by test-deb$' /etc/haplane/haplane.toml || fail "second dpkg -i overwrote the edited conffile"
ok

# --- unit and packaged config -------------------------------------------------------------------
grep -qx 'ExecStart=/usr/bin/haplane launch --config /etc/haplane/haplane.toml' "$unit" || fail "unit ExecStart"
grep -qx 'EnvironmentFile=-/etc/default/haplane' "$unit" || fail "unit EnvironmentFile"
grep -qx 'User=haplane' "$unit" || fail "unit User"
grep -qx 'StateDirectory=haplane' "$unit" || fail "unit StateDirectory"
grep -qx 'LimitNOFILE=65536' "$unit" || fail "unit LimitNOFILE"
ok
analyzed="skipped (no systemd-analyze)"
if command -v systemd-analyze >/dev/null 2>&1; then
  systemd-analyze verify "$unit" >"$tmp/verify.log" 2>&1 || { cat "$tmp/verify.log" >&2; fail "systemd-analyze verify $unit"; }
  if grep -i 'haplane.service' "$tmp/verify.log" >&2; then
    fail "systemd-analyze verify complains about the unit"
  fi
  analyzed="verified"
  ok
fi
# The packaged config, as the service would read it (as user haplane).
as_haplane /usr/bin/haplane config check --config /etc/haplane/haplane.toml >"$tmp/check.out" 2>&1 \
  || { cat "$tmp/check.out" >&2; fail "haplane config check --config /etc/haplane/haplane.toml"; }
grep -Eq '^ +bind +127\.0\.0\.1:8081$' "$tmp/check.out" || { cat "$tmp/check.out" >&2; fail "packaged config does not bind 127.0.0.1:8081"; }
grep -Eq '^ +advertise_uri +http://127\.0\.0\.1:8081$' "$tmp/check.out" || fail "packaged config advertise_uri"
grep -q '/var/lib/haplane/store' "$tmp/check.out" || fail "packaged config store is not /var/lib/haplane/store"
ok

# --- run the installed binary as user haplane ---------------------------------------------------
free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
  else
    local p
    for _ in $(seq 1 50); do
      p=$((20000 + RANDOM % 30000))
      (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
    return 1
  fi
}
port=$(free_port) || fail "no free port"
# The node's own directory (store and pid file) belongs to haplane; the logs stay the caller's.
run="$tmp/node"
chmod 0711 "$tmp"
as_root install -d -o haplane -g haplane -m 0750 "$run"
cat >"$tmp/node.toml" <<EOF
ha_mode = "auto"
persist = "auto"
persistence_dir = "$run/store"
bind = "127.0.0.1:$port"
advertise_uri = "http://127.0.0.1:$port"
node_id = "test-deb"
pid_file = "$run/pid.txt"
log_format = "json"
EOF
chmod 0644 "$tmp/node.toml"
as_haplane /usr/bin/haplane config check --config "$tmp/node.toml" >"$tmp/check-node.out" 2>&1 \
  || { cat "$tmp/check-node.out" >&2; fail "haplane config check of the test config"; }
launched=$SECONDS
(
  cd "$run"
  ulimit -n 65536 2>/dev/null || true # the unit's LimitNOFILE, where the hard limit allows it
  exec setpriv --reuid=haplane --regid=haplane --init-groups \
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/var/lib/haplane LANG=C.UTF-8 \
    /usr/bin/haplane launch --config "$tmp/node.toml"
) >"$tmp/node.out" 2>"$tmp/node.err" &
node_pid=$!
state=""
deadline=$((SECONDS + 90))
while [ "$SECONDS" -lt "$deadline" ]; do
  [ -d "/proc/$node_pid" ] || fail "the node exited before it became MASTER"
  state=$(curl -s --max-time 2 "http://127.0.0.1:$port/v1/server/ha/state" || true)
  [ "$state" = '"MASTER"' ] && break
  sleep 0.2
done
[ "$state" = '"MASTER"' ] || fail "no MASTER on 127.0.0.1:$port within 90 s (last answer: ${state:-none})"
master_seconds=$((SECONDS - launched))
ok
owner=$(stat -c %U "/proc/$node_pid")
[ "$owner" = haplane ] || fail "the node runs as $owner, not haplane"
[ "$(ps -o user= -p "$node_pid" 2>/dev/null | tr -d ' ' || echo haplane)" = haplane ] || fail "ps: the node is not user haplane's"
pid_text=$(as_root cat "$run/pid.txt")
[ "$pid_text" = "$node_pid" ] || fail "pid file holds $pid_text, not the node's pid $node_pid"
as_root test -d "$run/store" || fail "no store directory $run/store"
foreign=$(as_root find "$run" ! -user haplane -print | head -n 3)
[ -z "$foreign" ] || fail "not haplane's: $foreign"
ok

# Graceful stop, by the service user itself (as an operator or ExecStop would).
as_haplane /usr/bin/haplane stop --pid-file "$run/pid.txt" --wait 30s >"$tmp/stop.out" 2>&1 \
  || { cat "$tmp/stop.out" >&2; fail "haplane stop --pid-file"; }
node_status=0
wait "$node_pid" || node_status=$?
node_pid_was=$node_pid
node_pid=""
[ "$node_status" -eq 0 ] || fail "the node exited with status $node_status after SIGTERM"
[ ! -d "/proc/$node_pid_was" ] || fail "the node ($node_pid_was) is still running"
! as_root test -e "$run/pid.txt" || fail "the node left its pid file behind"
ok

# --- purge --------------------------------------------------------------------------------------
as_root dpkg --purge "$pkg" >"$tmp/purge.log" 2>&1 || { cat "$tmp/purge.log" >&2; fail "dpkg --purge $pkg"; }
we_installed=0
! package_present || fail "package still known to dpkg after purge"
for gone in /usr/bin/haplane "$unit" /etc/haplane /etc/default/haplane /var/lib/haplane \
  /usr/share/doc/haplane "$wants"; do
  [ ! -e "$gone" ] && [ ! -L "$gone" ] || fail "purge left $gone"
done
! getent passwd haplane >/dev/null || fail "purge left the user haplane"
! getent group haplane >/dev/null || fail "purge left the group haplane"
ok

printf 'test-deb: ok: %s (%s KiB), %d checks: contents, dpkg -i twice, unit %s, MASTER as haplane on 127.0.0.1:%s after %ds, graceful stop, purge clean (build %ds, total %ds)\n' \
  "$(basename "$deb")" "$((deb_size / 1024))" "$checks" "$analyzed" "$port" "$master_seconds" \
  "$build_seconds" "$((SECONDS - started))"
