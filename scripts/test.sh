#!/usr/bin/env bash
# The test command (README): installs what the suites need, builds once, runs every suite.
#   scripts/test.sh            everything
#   SKIP_E2E=1 scripts/test.sh Rust suites only
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n=== %s\n' "$*"; }

# --- system packages the suites use (a fresh CI machine may lack them) -------------------
missing=()
command -v python3 >/dev/null || missing+=(python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
command -v espeak-ng >/dev/null || missing+=(espeak-ng)   # audio fixtures (tests/e2e/fixtures.sh)
command -v sox >/dev/null || missing+=(sox)
command -v sipp >/dev/null || missing+=(sip-tester)       # SIPp (tests/sip)
command -v baresip >/dev/null || missing+=(baresip)      # a real softphone (tests/e2e/test_sip_phones.py)
command -v curl >/dev/null || missing+=(curl)
command -v ip >/dev/null || missing+=(iproute2)         # network namespaces for bad networks (tests/stress/badnet.py)
dpkg -s libopus-dev >/dev/null 2>&1 || missing+=(libopus-dev)  # Opus for WebRTC legs (crates/webrtc)
command -v chromium >/dev/null || missing+=(chromium)   # the web phone in a real browser (tests/browser)
command -v node >/dev/null || missing+=(nodejs)         # Node examples (docs/examples/node)
command -v npm >/dev/null || missing+=(npm)
command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || missing+=(nats-server)  # the cluster's bus (docs/cluster.md)
[ -x /usr/sbin/kamailio ] || missing+=(kamailio)   # SIP in front of the cluster (scripts/kamailio.sh)
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${missing[@]}"
fi

log "speech-to-text weights (scripts/models.sh)"
RINGSIDE_WHISPER_DIR="$(scripts/models.sh)"
export RINGSIDE_WHISPER_DIR RINGSIDE_REQUIRE_WHISPER=1   # the model tests must run, not skip

log "PostgreSQL for the store suite on both backends (scripts/postgres.sh)"
RINGSIDE_TEST_POSTGRES="$(scripts/postgres.sh)"
export RINGSIDE_TEST_POSTGRES RINGSIDE_REQUIRE_POSTGRES=1   # the PostgreSQL runs must run, not skip

log "format"
cargo fmt --all -- --check

log "shape: no import loops, no function over 150 lines (docs/design.md)"
python3 scripts/shape.py

log "clippy"
cargo clippy --workspace --all-targets -- -D warnings

log "unit, simulation and HTTP scenario tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi

if [ -z "${SKIP_E2E:-}" ]; then
  cargo build -p server -p stream-bot --bin ringside --bin stream-bot
  log "SIP scenarios: SIPp against ringside serve"
  RINGSIDE_BIN="$PWD/target/debug/ringside" bash tests/sip/run.sh
  log "end to end: Microsoft's Graph SDKs against ringside serve"
  RINGSIDE_BIN="$PWD/target/debug/ringside" bash tests/e2e/run.sh
  log "stress: crashes, callback outages, bad disks and networks, a soak (tests/stress)"
  RINGSIDE_BIN="$PWD/target/debug/ringside" bash tests/stress/run.sh
fi

log "all suites passed"
