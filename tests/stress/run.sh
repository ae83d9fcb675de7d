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

# shellcheck source=../lib.sh
. "$root/tests/lib.sh"
ringside_bin
e2e_venv  # httpx and numpy are all the scenarios need, and baresip.py for badnet

flags=()
scenarios=()
for a in "$@"; do
  case "$a" in --*) flags+=("$a") ;; *) scenarios+=("$a") ;; esac
done
((${#scenarios[@]})) || scenarios=(crash callbacks disk badnet soak)

for s in "${scenarios[@]}"; do
  if [ "$(id -u)" -ne 0 ]; then
    case "$s" in
      disk) why="it mounts a small tmpfs" ;;
      badnet) why="it makes network namespaces and TUN devices" ;;
      *) why="" ;;
    esac
    if [ -n "$why" ]; then
      printf '\n--- stress: %s SKIPPED: %s, which needs root (CI runs as root)\n' "$s" "$why"
      continue
    fi
  fi
  printf '\n--- stress: %s %s\n' "$s" "${flags[*]:-}"
  "$venv/bin/python" "$here/$s.py" "${flags[@]}"
done
