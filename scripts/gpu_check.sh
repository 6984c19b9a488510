#!/usr/bin/env bash
# Run the sg3 GPU check on a lent GPU machine (see docs/gpu.md).
#   bash scripts/gpu_check.sh [gpu_check.py options]      # report goes to $OUT (or ./gpu_check_out)
# If .whl/ holds wheels (made here by scripts/gpu_wheels.sh), they are installed into /tmp/site first,
# the way the device README describes, for the packages the machine's image lacks.
set -u
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "gpu_check.sh: installing the carried wheels failed" >&2; exit 3; }
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
export CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
exec python3 scripts/gpu_check.py --out "${OUT:-gpu_check_out}" "$@"
