#!/usr/bin/env bash
# Record PaddleOCR 3.7's own answers on the committed fidelity pages (tests/ocr/test_fidelity.py reads them).
# PaddleOCR pins its own opencv and numpy: it needs its own venv, e.g.
#   python3 -m venv /tmp/pocr && /tmp/pocr/bin/pip install -e '.[fidelity]'
#   OCRCONVERT_PADDLEOCR_PYTHON=/tmp/pocr/bin/python scripts/record_paddleocr_oracle.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${OCRCONVERT_PADDLEOCR_PYTHON:?set OCRCONVERT_PADDLEOCR_PYTHON to a python with paddleocr==3.7.0}"
OCR=.venv/bin/ocrconvert
D=tests/data/ocr-fidelity
inputs=()
for p in "$D"/pages/*; do
  case "$p" in *transparent*) inputs+=("$D/$(basename "${p%.*}").flat.png");; *) inputs+=("$p");; esac
done
record() {  # VERSION DET REC
  PYTHONWARNINGS=ignore OMP_NUM_THREADS=2 "$PY" tests/ocr/paddleocr_oracle.py \
    --det "$($OCR zoo pull "$2")" --rec "$($OCR zoo pull "$3")" --out "$D/paddleocr-$1.json.tmp" "${inputs[@]}"
  mv "$D/paddleocr-$1.json.tmp" "$D/paddleocr-$1.json"
}
record v4 ppocrv4-det ppocrv4-rec
record v5 ppocrv5-mobile-det ppocrv5-mobile-rec
