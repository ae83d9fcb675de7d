#!/usr/bin/env bash
# SIP scenarios: SIPp (a real third-party SIP stack) against a real `ringside serve`.
#   bash tests/sip/run.sh
# RINGSIDE_BIN: the binary to test (default: target/debug/ringside).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${RINGSIDE_BIN:-$root/target/debug/ringside}"
command -v sipp >/dev/null || { echo "sip/run.sh: sipp not installed (Debian: sip-tester)" >&2; exit 2; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
dir="$(mktemp -d)"
http="$(free_port)"; sip="$(free_port)"
cat > "$dir/ringside.toml" <<TOML
[server]
listen = "127.0.0.1:$http"

[admin]
token = "sip-test-admin"

[[tenants]]
id = "11111111-1111-1111-1111-111111111111"

[[users]]
id = "a11ce000-0000-0000-0000-000000000001"
tenant = "11111111-1111-1111-1111-111111111111"
sip_user = "alice"
sip_password = "wonderland"

[sip]
udp = ["127.0.0.1:$sip"]
tcp = ["127.0.0.1:$sip"]
# SIPp 3.6 answers only the first challenge and only knows MD5.
digest = ["MD5", "SHA-256"]
TOML
"$bin" --data-dir "$dir" serve > "$dir/log" 2>&1 &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$http/healthz" >/dev/null && break; sleep 0.1; done

fails=0
scenario() { # scenario NAME XML [sipp args...]
  local name=$1 xml=$2; shift 2
  if (cd "$dir" && timeout 30 sipp "127.0.0.1:$sip" -sf "$here/$xml" -m 1 -i 127.0.0.1 -nostdin \
        -timeout 20s -trace_err "$@" > "$dir/sipp.out" 2>&1); then
    echo "ok   $name"
  else
    echo "FAIL $name"; cat "$dir"/*errors.log 2>/dev/null | tail -5; fails=$((fails + 1))
  fi
}
contacts() { curl -sf -H "Authorization: Bearer sip-test-admin" "http://127.0.0.1:$http/admin/sip/registrations/alice"; }
check() { # check NAME COMMAND...
  if "${@:2}"; then echo "ok   $1"; else echo "FAIL $1"; fails=$((fails + 1)); fi
}

scenario "REGISTER with MD5 digest over UDP" register.xml -s alice -au alice -ap wonderland -p "$(free_port)"
check "the contact is registered with its expiry" grep -q '"expiresInSeconds":1[0-2][0-9]' <(contacts)
scenario "a wrong password gets 403" register-wrong-password.xml -s alice -au alice -ap nope -p "$(free_port)"
scenario "REGISTER over TCP adds a second contact" register.xml -t t1 -s alice -au alice -ap wonderland -p "$(free_port)"
check "both contacts are listed" test "$(contacts | grep -o '"contact"' | wc -l)" -eq 2
# Garbage on the SIP port: dropped, and the registrar keeps working.
python3 - "$sip" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for junk in [b"\x00" * 50, b"REGISTER\r\n\r\n", b"SIP/2.0 200\r\nVia: x\r\n\r\n", bytes(range(256)) * 8]:
    s.sendto(junk, ("127.0.0.1", int(sys.argv[1])))
PY
scenario "unregister with Contact: * and Expires: 0" unregister.xml -s alice -au alice -ap wonderland -p "$(free_port)"
check "no contact is left" grep -q '"contacts":\[\]' <(contacts)
check "ringside is still serving" curl -sf "http://127.0.0.1:$http/healthz" -o /dev/null

if [ "$fails" -ne 0 ]; then
  echo "sip/run.sh: $fails check(s) failed; ringside log:"; tail -30 "$dir/log"; exit 1
fi
echo "sip/run.sh: all SIP scenarios passed"
