#!/usr/bin/env bash
# Proof under stress (docs/reliability.md): each scenario is a script here that starts its own
# `ringside serve` on loopback, misbehaves at it, and exits non-zero when a gate fails.
#   bash tests/stress/run.sh                  the short profiles (the test command runs these)
#   bash tests/stress/run.sh callbacks        one scenario
#   bash tests/stress/run.sh --full crash     the issue's figures (longer; the soak for an hour)
# RINGSIDE_BIN: the binary under test (default target/debug/ringside).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

bin="${RINGSIDE_BIN:-target/debug/ringside}"
case "$bin" in /*) ;; *) bin="$root/$bin" ;; esac
[ -x "$bin" ] || { echo "run.sh: ringside binary not found at $bin (build it, or set RINGSIDE_BIN)" >&2; exit 2; }
export RINGSIDE_BIN="$bin"

# The end-to-end suite's virtualenv (httpx and numpy are all the scenarios need).
venv="$root/tests/e2e/.venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/tests/e2e/requirements.txt"

flags=()
scenarios=()
for a in "$@"; do
  case "$a" in --*) flags+=("$a") ;; *) scenarios+=("$a") ;; esac
done
((${#scenarios[@]})) || scenarios=(crash callbacks disk)

for s in "${scenarios[@]}"; do
  if [ "$s" = disk ] && [ "$(id -u)" -ne 0 ]; then
    printf '\n--- stress: disk SKIPPED: it mounts a small tmpfs, which needs root (CI runs as root)\n'
    continue
  fi
  printf '\n--- stress: %s %s\n' "$s" "${flags[*]:-}"
  "$venv/bin/python" "$here/$s.py" "${flags[@]}"
done
