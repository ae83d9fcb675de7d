#!/usr/bin/env bash
# End-to-end suite: drives a real `ringside serve` with msgraph-beta-sdk / msgraph-sdk.
#   bash tests/e2e/run.sh [pytest args...]
# RINGSIDE_BIN: the binary to test (default: target/debug/ringside, relative to the repo root).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

bin="${RINGSIDE_BIN:-target/debug/ringside}"
case "$bin" in /*) ;; *) bin="$root/$bin" ;; esac
if [ ! -x "$bin" ]; then
    echo "run.sh: ringside binary not found at $bin (build it, or set RINGSIDE_BIN)" >&2
    exit 2
fi
export RINGSIDE_BIN="$bin"

venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
bash "$here/fixtures.sh" >/dev/null
# Microsoft's Node libraries for the documented examples (docs/examples/node), as locked.
npm ci --prefix "$root/docs/examples/node" --no-audit --no-fund --loglevel=error >/dev/null
# playwright-core for the browser tests (Debian's Chromium; no browser download).
npm ci --prefix "$root/tests/browser" --no-audit --no-fund --loglevel=error >/dev/null

exec "$venv/bin/python" -m pytest -c "$here/pytest.ini" --rootdir "$here" "$here" "$@"
