#!/usr/bin/env bash
# Audio fixtures for the end-to-end media tests, made with espeak-ng and SoX (PEERS.md §5)
# rather than committed as blobs. Idempotent: files already made are kept.
#   bash tests/e2e/fixtures.sh [out dir]   (default tests/e2e/fixtures)
set -euo pipefail
set -f   # '*' is a DTMF key, not a glob
out="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/fixtures}"
mkdir -p "$out"
cd "$out"
pcm16k=(-r 16000 -c 1 -b 16 -e signed-integer)

make() { [ -s "$1" ] && return 0; "${@:2}"; }

speak() { # speak OUT TEXT [voice]
  local tmp; tmp=$(mktemp --suffix=.wav)
  espeak-ng -v "${3:-en-us}" -s 150 -w "$tmp" "$2"
  sox "$tmp" "${pcm16k[@]}" "$1" norm -3
  rm -f "$tmp"
}

dtmf() { # dtmf DIGITS OUT: 150 ms per key, 100 ms apart, as a phone would send them
  local tmp n=0 parts="" lo hi d
  tmp=$(mktemp -d)
  for d in $(echo "$1" | sed 's/./& /g'); do
    case $d in
      1) lo=697 hi=1209;; 2) lo=697 hi=1336;; 3) lo=697 hi=1477;; A) lo=697 hi=1633;;
      4) lo=770 hi=1209;; 5) lo=770 hi=1336;; 6) lo=770 hi=1477;; B) lo=770 hi=1633;;
      7) lo=852 hi=1209;; 8) lo=852 hi=1336;; 9) lo=852 hi=1477;; C) lo=852 hi=1633;;
      '*') lo=941 hi=1209;; 0) lo=941 hi=1336;; '#') lo=941 hi=1477;; D) lo=941 hi=1633;;
    esac
    n=$((n+1))
    sox -n "${pcm16k[@]}" "$tmp/t$n.wav" synth 0.15 sine $lo synth 0.15 sine mix $hi gain -6 pad 0 0.1
    parts="$parts $tmp/t$n.wav"
  done
  sox $parts "$2"
  rm -rf "$tmp"
}

make prompt.wav speak prompt.wav "Welcome to ringside. Your call is important to us. Please stay on the line."
make prompt-44k-stereo.wav sox prompt.wav -r 44100 -c 2 -b 16 -e signed-integer prompt-44k-stereo.wav
make speech.wav speak speech.wav "My account number is four two seven one, and I would like to pay my bill." en-us+f3
make order.wav speak order.wav "Hello, I need some help with my order."
make opens.wav speak opens.wav "Can you tell me when the store opens tomorrow?"
make pause1s.wav sox -n "${pcm16k[@]}" pause1s.wav trim 0 1
make transcribe.wav sox order.wav pause1s.wav opens.wav transcribe.wav
make long.wav sox -n "${pcm16k[@]}" long.wav synth 30 sine 440 gain -12
make dtmf.wav dtmf "1234#*0" dtmf.wav
for f in 500 800 1100; do
  make "sine$f.wav" sox -n "${pcm16k[@]}" "sine$f.wav" synth 4 sine $f gain -12
done
# For baresip's aufile source: 8 kHz PCM, with trailing silence (baresip 1.0 hangs up when its
# source file ends).
pcm8k=(-r 8000 -c 1 -b 16 -e signed-integer)
make prompt8k.wav sox prompt.wav "${pcm8k[@]}" prompt8k.wav
make speech8k.wav sox speech.wav "${pcm8k[@]}" speech8k.wav pad 0 30
make transcribe8k.wav sox transcribe.wav "${pcm8k[@]}" transcribe8k.wav pad 0.5 30
make dtmf8k.wav sox dtmf.wav "${pcm8k[@]}" dtmf8k.wav pad 0.3 30
make silence8k.wav sox -n "${pcm8k[@]}" silence8k.wav trim 0 120
echo "fixtures in $out"
