#!/usr/bin/env bash
# Download the wheels of scripts/gpu_wheels.txt into .whl/ (git-ignored through .git/info/exclude) for a
# device machine (x86-64, CPython 3.12), as the device README describes. Packages published only as
# source (antlr4-python3-runtime) are built into a pure-Python wheel here.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
PY="${PYTHON:-python3}"
grep -v '^\s*#' scripts/gpu_wheels.txt | grep -v '^\s*$' | while read -r req; do
  if ! "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      --platform any -d .whl "$req"; then
    "$PY" -m pip wheel -q --no-deps -w .whl "$req"
  fi
done
ls -la .whl
