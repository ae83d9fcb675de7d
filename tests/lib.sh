# Shared by tests/e2e/run.sh and tests/stress/run.sh (sourced, with $root the repository root).

# The binary under test: $RINGSIDE_BIN, default target/debug/ringside (relative to the root);
# exported absolute for the scripts the runner starts.
ringside_bin() {
  local bin="${RINGSIDE_BIN:-target/debug/ringside}"
  case "$bin" in /*) ;; *) bin="$root/$bin" ;; esac
  if [ ! -x "$bin" ]; then
    echo "$0: ringside binary not found at $bin (build it, or set RINGSIDE_BIN)" >&2
    exit 2
  fi
  export RINGSIDE_BIN="$bin"
}

# The end-to-end suite's virtualenv, created and brought up to its requirements; sets $venv.
e2e_venv() {
  venv="$root/tests/e2e/.venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/tests/e2e/requirements.txt"
}
