#!/usr/bin/env bash
# The side-by-side benchmark on one GPU, unattended, in well under 10 minutes:
#   1. benchmarks/vs_reference.py --device gpu, every row (search 1st / 2nd order at
#      (8, 5, 16) and (16, 8, 64), DARTS_V2 retraining step): the DARTS authors' PyTorch
#      code and jaxnas on the same GPU, each side in its own process;
#   2. a jax.profiler trace of one jaxnas first-order paper-size search step (taken in
#      the same run, after that step's warm-up).
#
# Needs on the GPU machine: `python3` with PyTorch (CUDA) and JAX (CUDA), and jaxnas'
# dependencies (flax, optax, chex, orbax-checkpoint, ml-collections, tqdm); wheels in
# `.whl/` are installed first (into /tmp/site) where the image lacks one or has another
# version.  The DARTS code's cnn/ folder at $REFERENCE_DIR (default: peers_darts/cnn, an
# ignored folder of this checkout, so that it travels with the working tree).
#
# Writes into $OUT (default: benchmarks/results/gpu-<date>/), no deeper than one folder:
#   vs_reference_gpu.json   both sides of every row and their ratios (see vs_reference.py)
#   vs_reference.log        the run's output (each child's result as it finishes, a table)
#   jaxnas_trace.perfetto.json.gz   the trace for ui.perfetto.dev (Chrome trace events);
#                           its per-process summary (kernel count, busy time, span) is
#                           in the JSON's "trace" entry
#   jaxnas_trace.xplane.pb.gz.partNN  the same trace for TensorBoard's profile plugin /
#                           xprof, gzipped and cut in 15 MiB parts (the device tool brings
#                           back files of up to 16 MiB): cat the parts | gunzip > x.xplane.pb
#   env.txt                 nvidia-smi, CPU, Python packages
#
# Time: the reference rows run first, one at a time (about 2 minutes); then the five
# jaxnas rows and the trace compile side by side (--jobs 6; their steps take turns under
# a file lock), each child killed after $CHILD_TIMEOUT s; the whole benchmark is stopped
# after $BUDGET s and keeps what it measured (the JSON is rewritten after every child).
#
# Once, here, from the repository root (the device tool sends the checkout):
#   mkdir -p peers_darts .git/info && cp -r ../shared/peers/darts/cnn peers_darts/
#   echo /peers_darts/ >> .git/info/exclude
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: -d .whl \
#       ml-collections==1.1.0 flax==0.12.8 optax==0.2.8 chex==0.1.92
# then run, with the device tool:  command "bash benchmarks/gpu.sh",
#   carry ["peers_darts", ".whl"], timeout_s 600.  On any GPU machine:
#   OUT=/some/dir REFERENCE_DIR=/path/to/darts/cnn bash benchmarks/gpu.sh

set -u -o pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-benchmarks/results/gpu-$(date +%Y%m%d-%H%M%S)}
REFERENCE_DIR=${REFERENCE_DIR:-peers_darts/cnn}
PY=${PYTHON:-python3}
STEPS=${STEPS:-5}
BUDGET=${BUDGET:-480}             # seconds for the whole benchmark (trace included)
CHILD_TIMEOUT=${CHILD_TIMEOUT:-330}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

if compgen -G ".whl/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

{
    date -u
    nvidia-smi || true
    grep -m1 'model name' /proc/cpuinfo; nproc; cat /proc/loadavg
    "$PY" -m pip list 2>/dev/null | grep -i -E '^(torch|jax|jaxlib|jax-cuda|flax|optax|chex|ml.collections|numpy|orbax) '
} > "$OUT/env.txt" 2>&1

# fail in seconds, not minutes, when the machine lacks something
"$PY" - <<'EOF' 2>&1 | tee -a "$OUT/env.txt" || exit 1
import jax, torch, jaxnas  # noqa: F401
assert torch.cuda.is_available(), "PyTorch sees no GPU"
assert jax.default_backend() == "gpu", f"jax runs on {jax.default_backend()}"
print("torch", torch.__version__, torch.cuda.get_device_name(0), "| jax", jax.__version__, jax.devices())
EOF

TRACE_DIR=$(mktemp -d /tmp/jaxnas_trace.XXXXXX)
timeout -k 15 "$BUDGET" "$PY" benchmarks/vs_reference.py \
    --reference-dir "$REFERENCE_DIR" --device gpu --steps "$STEPS" \
    --jobs 6 --timeout-s "$CHILD_TIMEOUT" --max-rss-gb 60 \
    --trace "$TRACE_DIR" --out "$OUT/vs_reference_gpu.json" \
    --note "benchmarks/gpu.sh: reference rows alone; jaxnas rows and the trace compiled 6 at a time, their steps under a file lock" \
    2>&1 | tee "$OUT/vs_reference.log"
status=$?

run=$(ls -d "$TRACE_DIR"/plugins/profile/*/ 2>/dev/null | tail -n 1)
if [ -n "$run" ]; then
    cp "$run"perfetto_trace.json.gz "$OUT/jaxnas_trace.perfetto.json.gz"
    cat "$run"*.xplane.pb | gzip -c | split -b 15m -d - "$OUT/jaxnas_trace.xplane.pb.gz.part"
else
    echo "gpu.sh: no trace was written (see vs_reference.log)"
fi
rm -rf "$TRACE_DIR"
echo "gpu.sh: exit $status; wrote $OUT: $(ls "$OUT" | tr '\n' ' ')"
exit "$status"
