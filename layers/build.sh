#!/bin/sh
# Build the Lambda layer zip: layers/build.sh [--arch x86_64|arm64] [--out DIR] [--wheel-dir DIR]
set -e
exec "${PYTHON:-python3}" "$(dirname "$0")/build.py" build "$@"
