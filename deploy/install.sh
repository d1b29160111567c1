#!/usr/bin/env bash
# Install alray into a virtual environment: the one install step of `make install`, CI and
# the container image (deploy/Dockerfile). Idempotent: a second run changes nothing.
#
#   VENV=.venv          where the virtual environment lives (created if missing)
#   PY=python3.11       the interpreter that creates it
#   ALRAY_EXTRAS=dev    extras to install ("" in the image: no test tools)
#   ALRAY_EDITABLE=1    1: pip install -e . (a checkout); 0: a regular install (the image)
#   TORCH_INDEX_URL=    a PyTorch wheel index (the image's CPU or CUDA build); empty: the
#                       default index (or the machine's pip configuration)
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PY:-python3.11}
EXTRAS=${ALRAY_EXTRAS-dev}
EDITABLE=${ALRAY_EDITABLE:-1}
TORCH_INDEX_URL=${TORCH_INDEX_URL:-}

test -x "$VENV/bin/python" || "$PY" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip)
"${pip[@]}" install --upgrade pip >/dev/null
if [ -n "$TORCH_INDEX_URL" ]; then
  "${pip[@]}" install --index-url "$TORCH_INDEX_URL" "torch==2.14.1" "torchvision==0.29.1"
else
  "${pip[@]}" install "torch==2.14.1" "torchvision==0.29.1"
fi
target=.
[ -n "$EXTRAS" ] && target=".[$EXTRAS]"
if [ "$EDITABLE" = 1 ]; then
  "${pip[@]}" install -c deploy/constraints.txt -e "$target"
else
  "${pip[@]}" install -c deploy/constraints.txt "$target"
fi
"$VENV/bin/python" - <<'PY'
import ray, torch, alray  # noqa: F401  (the install is usable)
pin = open("deploy/constraints.txt").read().split("ray==")[1].split()[0]
if ray.__version__ != pin:
    raise SystemExit(f"ray {ray.__version__} installed, deploy/constraints.txt pins {pin}")
print(f"alray installed: ray {ray.__version__}, torch {torch.__version__}")
PY
