#!/bin/sh
# The API reference: HTML pages built by pdoc from the docstrings of the public names
# (minicnn.__all__), warnings as errors. Needs pdoc: pip install -e ".[docs]".
# Usage: docs/api_reference.sh [OUT_DIR]   (default: build/api-reference)
set -eu
out="${1:-build/api-reference}"
cd "$(dirname "$0")/.."
python -W error -m pdoc --docformat google --math -o "$out" minicnn
test -s "$out/minicnn.html"
echo "API reference: $out/minicnn.html"
