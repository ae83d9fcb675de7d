#!/usr/bin/env bash
# Three ringside nodes on loopback sharing one PostgreSQL database and one NATS server, with
# Kamailio in front of their SIP ports (docs/cluster.md); each node has the same directory:
# one tenant, one app (reached at sip:bot@… and +15550100), two simulated users and a SIP
# user "hank" (password "hank-secret") for a softphone.
#   scripts/cluster.sh          start (building ringside if needed) and print how to reach it
#   scripts/cluster.sh stop     stop the nodes and NATS (PostgreSQL: scripts/postgres.sh stop)
# RINGSIDE_BIN picks the binary (default target/release/ringside); RINGSIDE_CLUSTER_DIR the
# folder (default /tmp/ringside-cluster). Nodes a, b, c listen on 127.0.0.1:8481-8483 (HTTP)
# and 127.0.0.1:5071-5073 (SIP); Kamailio on 127.0.0.1:5060.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${RINGSIDE_CLUSTER_DIR:-/tmp/ringside-cluster}"
bin="${RINGSIDE_BIN:-target/release/ringside}"
nats_port="${RINGSIDE_NATS_PORT:-4222}"
nodes=(a b c)

stop() {
  scripts/kamailio.sh stop "$dir/kamailio" 2>/dev/null || true
  for n in "${nodes[@]}" nats; do
    if [ -f "$dir/$n.pid" ]; then
      kill "$(cat "$dir/$n.pid")" 2>/dev/null || true
      rm -f "$dir/$n.pid"
    fi
  done
}
if [ "${1:-}" = stop ]; then stop; echo "stopped"; exit 0; fi

if ! command -v nats-server >/dev/null && [ ! -x /usr/sbin/nats-server ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq nats-server
fi
nats=$(command -v nats-server || echo /usr/sbin/nats-server)
[ -x "$bin" ] || cargo build --release --bin ringside
pg="$(scripts/postgres.sh)"
psql=$(ls /usr/lib/postgresql/*/bin/psql | sort -V | tail -1)
if [ "$("$psql" "$pg" -qtAc "SELECT 1 FROM pg_database WHERE datname='ringside_cluster'")" != 1 ]; then
  "$psql" "$pg" -qc "CREATE DATABASE ringside_cluster"
fi
db="${pg%/*}/ringside_cluster"

mkdir -p "$dir"
stop
"$nats" -a 127.0.0.1 -p "$nats_port" >"$dir/nats.log" 2>&1 &
echo $! >"$dir/nats.pid"

tenant=11111111-1111-1111-1111-111111111111
app=aaaaaaaa-0000-0000-0000-000000000001
secret="cluster-secret"
admin="cluster-admin"
port=8481
sip=5071
rtp=46000
for n in "${nodes[@]}"; do
  mkdir -p "$dir/$n"
  cat >"$dir/$n/ringside.toml" <<TOML
[server]
listen = "127.0.0.1:$port"

[admin]
token = "$admin"

[store]
url = "$db"

[cluster]
node_id = "$n"
nats = "nats://127.0.0.1:$nats_port"

[sip]
udp = ["127.0.0.1:$sip"]
tcp = ["127.0.0.1:$sip"]
rtp_ports = [$rtp, $((rtp + 998))]
digest = ["MD5", "SHA-256"]

[[tenants]]
id = "$tenant"
name = "Contoso"

[[apps]]
id = "$app"
tenant = "$tenant"
name = "Cluster bot"
secret = "$secret"
addresses = ["sip:bot@127.0.0.1", "+15550100"]

[[users]]
id = "a11ce000-0000-0000-0000-000000000001"
tenant = "$tenant"
display_name = "Alice"
behaviour = { action = "answer", answerAfterMs = 500 }

[[users]]
id = "b0b00000-0000-0000-0000-000000000002"
tenant = "$tenant"
display_name = "Bob"
behaviour = { action = "answer", answerAfterMs = 500, hangupAfterMs = 60000 }

[[users]]
id = "4a4c0000-0000-0000-0000-000000000003"
tenant = "$tenant"
display_name = "Hank"
endpoint = "sip"
sip_user = "hank"
sip_password = "hank-secret"
TOML
  "$bin" --data-dir "$dir/$n" serve >"$dir/$n/ringside.log" 2>&1 &
  echo $! >"$dir/$n.pid"
  port=$((port + 1))
  sip=$((sip + 1))
  rtp=$((rtp + 1000))
done
scripts/kamailio.sh "$dir/kamailio" 127.0.0.1:5060 127.0.0.1:5071 127.0.0.1:5072 127.0.0.1:5073 >/dev/null

port=8481
for n in "${nodes[@]}"; do
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.2
  done
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || { echo "node $n did not start:"; tail -5 "$dir/$n/ringside.log"; exit 1; }
  port=$((port + 1))
done

cat <<TXT
ringside cluster up: nodes a, b, c at http://127.0.0.1:8481, :8482, :8483
  SIP    Kamailio at sip:127.0.0.1:5060 (nodes' SIP on 5071-5073); call sip:bot@127.0.0.1:5060,
         or register user hank (password hank-secret) there
  store  $db
  bus    nats://127.0.0.1:$nats_port
  app    $app  secret $secret  (tenant $tenant)
  admin  token $admin
  logs   $dir/<node>/ringside.log

Try: TOKEN=\$(curl -s -d grant_type=client_credentials -d client_id=$app -d client_secret=$secret \\
         http://127.0.0.1:8481/$tenant/oauth2/v2.0/token | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
     create a call on :8481, GET it on :8482, DELETE it on :8483.
Stop: scripts/cluster.sh stop
TXT
