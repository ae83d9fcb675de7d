#!/usr/bin/env bash
# The run command (README): installs what building ringside needs, then runs it with its
# embedded defaults. Arguments go to `ringside serve` (e.g. --listen 0.0.0.0:8480).
set -euo pipefail
cd "$(dirname "$0")/.."
# libopus for browser (WebRTC) legs: crates/webrtc links the system library.
if ! dpkg -s libopus-dev >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq libopus-dev
fi
# Speech-to-text weights for transcription (ringside runs without them and says so).
scripts/models.sh >/dev/null || echo "transcription weights not installed: transcription unavailable" >&2
exec cargo run --release --bin ringside -- serve "$@"
