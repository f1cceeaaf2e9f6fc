#!/usr/bin/env bash
# Fills a folder (default .whl/, which git ignores) with the wheels benchmarks/gpu_pass.sh installs on
# a borrowed GPU machine: the packages `import seqgen` and the pass need that those machines lack
# (hydra-core, omegaconf, antlr4-python3-runtime, mlxtend), at the versions installed here, for
# their Python (3.12 by default). Run it here, where the package registry is reachable; then carry
# the folder to the GPU machine and run `bash benchmarks/gpu_pass.sh --wheels .whl` there.
#
#   bash benchmarks/gpu_wheels.sh [--dir DIR] [--python-version 3.12]
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=.whl
PYVER=3.12
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) DIR="$2"; shift 2 ;;
    --python-version) PYVER="$2"; shift 2 ;;
    *) echo "gpu_wheels.sh: unknown argument $1 (use --dir DIR, --python-version X.Y)" >&2; exit 2 ;;
  esac
done
PY="${PYTHON:-$(command -v python3 || command -v python)}"
# the versions this environment runs (and CI tests), else the newest
mapfile -t specs < <("$PY" - <<'PYEOF'
from importlib.metadata import PackageNotFoundError, version
for name in ("hydra-core", "omegaconf", "antlr4-python3-runtime", "mlxtend"):
    try:
        print(f"{name}=={version(name)}")
    except PackageNotFoundError:
        print(name)
PYEOF
)
mkdir -p "$DIR"
binary=() source=()
for spec in "${specs[@]}"; do
  case "$spec" in antlr4-python3-runtime*) source+=("$spec") ;; *) binary+=("$spec") ;; esac
done
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
  -d "$DIR" "${binary[@]}"
# antlr4-python3-runtime 4.9.3 (the version hydra-core 1.3 pins) is published as a source archive
# only: built here into a pure-Python wheel, which any Python 3 installs without building anything
"$PY" -m pip wheel --quiet --no-deps -w "$DIR" "${source[@]}"
ls -1 "$DIR"
