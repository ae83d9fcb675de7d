#!/usr/bin/env bash
# Kamailio in front of ringside nodes (installing Debian's package if missing), in the
# foreground-free way tests need: renders scripts/kamailio/kamailio.cfg and starts it.
#   scripts/kamailio.sh DIR LISTEN NODE...    e.g. /tmp/k 127.0.0.1:5060 127.0.0.1:5071 127.0.0.1:5072
#   scripts/kamailio.sh stop DIR
# Prints the pid; the log is DIR/kamailio.log.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ "${1:-}" = stop ]; then
  [ -f "$2/kamailio.pid" ] && kill "$(cat "$2/kamailio.pid")" 2>/dev/null || true
  exit 0
fi
dir="$1"; listen="$2"; shift 2
if ! [ -x /usr/sbin/kamailio ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing Kamailio (Debian's kamailio package)" >&2
  $SUDO apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq kamailio >&2
fi
mkdir -p "$dir"
: >"$dir/dispatcher.list"
for n in "$@"; do echo "1 sip:$n" >>"$dir/dispatcher.list"; done
modules=$(dirname "$(ls /usr/lib/*/kamailio/modules/tm.so | head -1)")
sed -e "s|@LISTEN@|$listen|g" -e "s|@LIST@|$dir/dispatcher.list|g" -e "s|@RUNDIR@|$dir|g" \
    -e "s|^mpath=.*|mpath=\"$modules/\"|" "$here/kamailio/kamailio.cfg" >"$dir/kamailio.cfg"
/usr/sbin/kamailio -c -f "$dir/kamailio.cfg" >"$dir/check.log" 2>&1 || { cat "$dir/check.log" >&2; exit 1; }
/usr/sbin/kamailio -DD -E -f "$dir/kamailio.cfg" -Y "$dir" -m 64 -M 8 >"$dir/kamailio.log" 2>&1 &
echo $! >"$dir/kamailio.pid"
echo $!
