#!/usr/bin/env bash
# The GPU pass in one command (issue 17): installs what a borrowed GPU machine lacks from a folder of
# wheels, then writes the markdown table of benchmarks/gpu_pass.py.
#
#   bash benchmarks/gpu_pass.sh [--tiny] [--wheels DIR] [--out FILE] [--budget SECONDS] [--steps N] [--warmup N]
#
# The GPU machines have torch, lightning, torchmetrics, sentencepiece, sacrebleu and torchvision but
# no hydra-core, omegaconf, antlr4-python3-runtime or mlxtend, and no network: those come from
# --wheels (default: $SEQGEN_WHEELS, else wheels/ beside this repository's root; benchmarks/gpu_wheels.sh
# fills .whl/ with them for those machines' Python), installed into a folder of their own on PYTHONPATH;
# a package that is already installed is left alone. --budget: seconds after which benchmarks/gpu_pass.py
# starts no more rows (they are listed as not run); --steps, --warmup: a row's timed and warm-up steps. --tiny: small nets, a few steps, on the CPU when there is no GPU
# (CI runs it so that this script never rots). The table goes to --out (default $OUT/gpu_pass.md
# when $OUT is set, else gpu_pass.md) and to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
TINY=()
EXTRA=()
WHEELS="${SEQGEN_WHEELS:-wheels}"
OUTFILE="${OUT:-.}/gpu_pass.md"
while [ $# -gt 0 ]; do
  case "$1" in
    --tiny) TINY=(--tiny); shift ;;
    --wheels) WHEELS="$2"; shift 2 ;;
    --out) OUTFILE="$2"; shift 2 ;;
    --budget|--steps|--warmup) EXTRA+=("$1" "$2"); shift 2 ;;
    *) echo "gpu_pass.sh: unknown argument $1 (use --tiny, --wheels DIR, --out FILE, --budget SECONDS, --steps N, --warmup N)" >&2; exit 2 ;;
  esac
done
# the interpreter: $PYTHON, else python3 (the GPU machines' python3 is the one with torch), else python
PY="${PYTHON:-$(command -v python3 || command -v python)}"
# one interpreter looks every module up without importing it (importing them all took 10 s of a CI
# run; one process per module 30 s) and names the packages that are not installed; a package that is
# installed but broken fails below with its own traceback
mapfile -t missing < <("$PY" - <<'EOF' 2>/dev/null
import importlib.util
for pair in ("hydra:hydra-core omegaconf:omegaconf antlr4:antlr4-python3-runtime mlxtend:mlxtend lightning:lightning "
             "torchmetrics:torchmetrics sacrebleu:sacrebleu sentencepiece:sentencepiece rich:rich sklearn:scikit-learn "
             "matplotlib:matplotlib").split():
    mod, pkg = pair.split(":")
    if importlib.util.find_spec(mod) is None:
        print(pkg)
EOF
)
if [ ${#missing[@]} -gt 0 ]; then
  if [ ! -d "$WHEELS" ]; then
    echo "gpu_pass.sh: missing ${missing[*]} and no wheel folder $WHEELS (pass --wheels DIR)" >&2; exit 3
  fi
  # into a folder of their own, without dependencies (what they need beyond one another is on those
  # machines already): nothing of the machine's own environment is touched
  SITE="${TMPDIR:-/tmp}/seqgen-gpu-pass-site"
  echo "gpu_pass.sh: installing ${missing[*]} from $WHEELS into $SITE"
  "$PY" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    --find-links "$WHEELS" "${missing[@]}"
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c "import seqgen" || { echo "gpu_pass.sh: import seqgen failed (see above)" >&2; exit 4; }
exec "$PY" benchmarks/gpu_pass.py "${TINY[@]}" --out "$OUTFILE" "${EXTRA[@]}"
