#!/usr/bin/env bash
# Wheel smoke: vitlab works when installed as a package, with no checkout on the path.
#
# Builds the wheel from a copy of the checkout's files (tracked + untracked, not ignored: what a clone plus your
# edits holds; no stale build/ folder), installs it into a new virtual environment together with the demo's
# torch (TORCH_VERSION, default 2.13.0: the low end of the supported range, the CPU wheel on this machine's disk)
# and the runtime dependencies, then runs every command from a temporary folder outside the checkout; each must
# exit 0 and leave the files it promises. Everything lives in one temporary folder, removed at the end.
#
#   .ci/wheel_smoke.sh                 # called by `make test` after pytest
#   PYTHON=python3.12 TORCH_VERSION=2.14.1 KEEP=1 .ci/wheel_smoke.sh     # KEEP=1: keep the folder to look at
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/vitlab-wheel-smoke.XXXXXX")
OTHER=  # the background lane, stopped if the script ends early
cleanup() {
    if [ -n "$OTHER" ]; then kill "$OTHER" 2>/dev/null || true; wait "$OTHER" 2>/dev/null || true; fi
    if [ -n "${KEEP:-}" ]; then echo "wheel smoke: kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
START=$SECONDS

fail() { echo "wheel smoke: FAILED: $*" >&2; exit 1; }
note() { echo "wheel smoke [$((SECONDS - START)) s]: $*"; }
TIMEFORMAT='%R %U %S'
timed() {  # timed LOG CMD...: run CMD with stdout+stderr to LOG; prints "wall W s, cpu C s"; returns CMD's status
    local log=$1 rc=0
    shift
    { time "$@" >"$log" 2>&1; } 2>"$log.time" || rc=$?
    awk '{ printf "wall %5.1f s, cpu %5.1f s", $1, $2 + $3 }' "$log.time"
    return "$rc"
}

# --- build and install --------------------------------------------------------------------------------------
mkdir -p "$WORK/src" "$WORK/dist" "$WORK/run" "$WORK/log"
if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
        | tar --null --ignore-failed-read -T - -cf - 2>/dev/null) | tar -xf - -C "$WORK/src"
else
    cp -a "$REPO/." "$WORK/src"  # not a git checkout (e.g. an unpacked sdist): take the folder as it is
fi
"$PYTHON" -m venv "$WORK/venv"
VENV=$WORK/venv/bin
took=$(timed "$WORK/log/wheel.log" "$VENV/pip" wheel "$WORK/src" --no-deps -q -w "$WORK/dist") \
    || { tail -20 "$WORK/log/wheel.log"; fail "pip wheel"; }
WHEEL=$(ls "$WORK"/dist/vitlab-*.whl)
note "built $(basename "$WHEEL"): $took"
# --no-compile: no .pyc for all of torch up front (saves ~15 s); the modules that run compile on first import.
took=$(timed "$WORK/log/install.log" "$VENV/pip" install -q --no-compile "torch==$TORCH_VERSION" "$WHEEL") \
    || { grep -v "is ignored" "$WORK/log/install.log" | tail -20; fail "pip install"; }
note "installed it with torch==$TORCH_VERSION and the runtime dependencies into a new venv: $took"

# --- from a folder outside the checkout, no checkout on sys.path ----------------------------------------------
cd "$WORK/run"
case "$PWD/" in "$REPO"/*) fail "the smoke folder $PWD lies inside the checkout; set TMPDIR elsewhere" ;; esac
unset PYTHONPATH
export PYTHONNOUSERSITE=1 OMP_NUM_THREADS=1 MPLBACKEND=Agg
PY=$VENV/python
"$PY" - "$WORK/venv" "$TORCH_VERSION" <<'EOF' || fail "vitlab is not the installed wheel, or torch is not $TORCH_VERSION"
import sys, sysconfig, torch, vitlab
venv, want = sys.argv[1], sys.argv[2]
site = sysconfig.get_paths()["purelib"]
assert vitlab.__file__.startswith(site) and site.startswith(venv), (vitlab.__file__, site)
assert torch.__version__.split("+")[0] == want, torch.__version__
print(f"vitlab from {vitlab.__file__}, torch {torch.__version__}")
EOF

smoke() {  # smoke NAME ARGS...: run `vitlab ARGS...`; stdout in log/NAME.out; exit 0 or fail with its stderr
    local name=$1 rc=0
    shift
    { time "$VENV/vitlab" "$@" >"$WORK/log/$name.out" 2>"$WORK/log/$name.err"; } 2>"$WORK/log/$name.time" || rc=$?
    if [ "$rc" -ne 0 ]; then tail -20 "$WORK/log/$name.err" >&2; fail "vitlab $* (exit $rc)"; fi
    # wall time only: the shell's CPU count would also take in the other lane when it ends during this command
    awk -v cmd="vitlab $*" '{ printf "  ok  %5.1f s  %s\n", $1, cmd }' "$WORK/log/$name.time"
}
files() { for f in "$@"; do [ -s "$f" ] || fail "missing or empty file: $f"; done; }
pngs() { files "$@"; "$PY" -c 'import sys; from PIL import Image; [Image.open(p).verify() for p in sys.argv[1:]]' "$@" \
    || fail "not a valid PNG: $*"; }
has() { grep -q -- "$2" "$WORK/log/$1.out" || fail "vitlab $1 printed no '$2'"; }

# Two lanes, run side by side (each command is single-threaded): the trained runs, and the stand-alone commands.
runs_lane() {
    TINY=(--set epochs=1 --set threads=1 --set "model_args={depth: 1, embed_dim: 32, num_heads: 2}")
    smoke train train --out runs/digits --quiet "${TINY[@]}"
    files runs/digits/{config.yaml,run.json,metrics.csv,model.safetensors,summary.json}
    pngs runs/digits/{curves.png,confusion.png}
    smoke eval eval runs/digits --json
    "$PY" -c 'import json, sys; m = json.load(open(sys.argv[1])); assert m["n"] > 0 and {"acc1", "ece", "loss"} <= set(m), m' \
        "$WORK/log/eval.out" || fail "vitlab eval --json printed no metrics"
    "$PY" - <<'PNG' || fail "could not write digit.png"
import json
from PIL import Image
channels, height, width = json.load(open("runs/digits/run.json"))["image_shape"]  # the model's input size
Image.new("L" if channels == 1 else "RGB", (width, height), 128).save("digit.png")
PNG
    smoke predict predict runs/digits digit.png --topk 2
    has predict "digit.png: "
    mkdir -p images/sub && cp digit.png images/sub/
    smoke predict_csv predict runs/digits images --out preds.csv  # a folder, searched recursively
    files preds.csv
    grep -q "^images/sub/digit.png," preds.csv || fail "vitlab predict --out preds.csv has no row for digit.png"
    smoke export export runs/digits --format pt2  # torch.export: no extra dependency
    files runs/digits/{model.pt2,model.pt2.json}
    has export "top-1 agreement 100.00%"
    # ONNX needs the export extra, which this venv lacks: one line naming it, exit 2, nothing written
    if "$VENV/vitlab" export runs/digits --format onnx >"$WORK/log/onnx.out" 2>"$WORK/log/onnx.err"; then
        fail "vitlab export --format onnx worked without onnx installed"
    fi
    grep -q "pip install 'vitlab\[export\]'" "$WORK/log/onnx.err" || fail "vitlab export --format onnx did not name the extra"
    [ ! -e runs/digits/model.onnx ] || fail "a failed ONNX export left runs/digits/model.onnx"

    SEQ=(--set steps=20 --set warmup=5 --set eval_every=20 --set num_train=256 --set num_test=32 --set max_len=6
         --set batch_size=32 --set d_model=32 --set dim_ff=64 --set num_encoder_layers=1 --set num_decoder_layers=1)
    smoke train_seq2seq train --config transformer_reverse --out runs/reverse --quiet "${SEQ[@]}"
    files runs/reverse/{config.yaml,metrics.csv,model.safetensors}
    pngs runs/reverse/curves.png
    grep -q "dataset: reverse" runs/reverse/config.yaml || fail "runs/reverse/config.yaml is not the recipe's"
    smoke translate translate runs/reverse "3 1 2"
    [ "$(wc -l <"$WORK/log/translate.out")" -eq 1 ] || fail "vitlab translate printed not one line"
}

other_lane() {
    smoke models models
    has models vit_tiny_patch4_32
    smoke recipes recipes
    has recipes transformer_reverse
    has recipes cutmix
    smoke plot plot activations --out plots/activations.png  # one plot: all of them live in vitlab.viz
    pngs plots/activations.png
    smoke demo demo legendre --out demo
    pngs demo/legendre_fit.png
    smoke reproduce reproduce legendre --quick --jobs 1 --no-progress --out reproduce
    files reproduce/{report.md,report.html,results.json}
    grep -q "Legendre" reproduce/report.md || fail "reproduce/report.md does not report the legendre recipe"
}

note "running every command"
other_lane >"$WORK/log/other_lane.txt" 2>&1 &
OTHER=$!
runs_lane
wait "$OTHER" || { cat "$WORK/log/other_lane.txt"; OTHER=; fail "see above"; }
OTHER=
cat "$WORK/log/other_lane.txt"

times >"$WORK/log/times.txt"
CPU=$(awk 'NR == 2 { for (i = 1; i <= 2; i++) { split($i, t, "m"); s += t[1] * 60 + t[2] } } END { printf "%.0f", s }' "$WORK/log/times.txt")
note "all commands ok from $(basename "$WHEEL") (total: wall $((SECONDS - START)) s, cpu $CPU s)"
