#!/usr/bin/env bash
# End-to-end suite: drives a real `ringside serve` with msgraph-beta-sdk / msgraph-sdk.
#   bash tests/e2e/run.sh [pytest args...]
# RINGSIDE_BIN: the binary to test (default: target/debug/ringside, relative to the repo root).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

# shellcheck source=../lib.sh
. "$root/tests/lib.sh"
ringside_bin
e2e_venv
bash "$here/fixtures.sh" >/dev/null
# Microsoft's Node libraries for the documented examples (docs/examples/node), as locked.
npm ci --prefix "$root/docs/examples/node" --no-audit --no-fund --loglevel=error >/dev/null
# playwright-core for the browser tests (Debian's Chromium; no browser download).
npm ci --prefix "$root/tests/browser" --no-audit --no-fund --loglevel=error >/dev/null

exec "$venv/bin/python" -m pytest -c "$here/pytest.ini" --rootdir "$here" "$here" "$@"
