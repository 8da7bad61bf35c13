#!/usr/bin/env bash
# One GPU window (issue 12 section 6): on a GPU machine holding this repository, the GPU benchmark rows and then the
# paper-core preset, everything measured written to one folder, within about 10 minutes.
#
#   benchmarks/gpu_window.sh OUT_DIR [--smoke]
#
# OUT_DIR gets machine.txt, bench.json, bench.txt, plan.txt, summary.json, summary.md, claims.csv, workflow.log.
# Without internet the preset reads its data from an IDX folder: NETDYN_IDX=<folder with the four IDX files>
# (default: /usr/share/datasets/fashion-mnist when it exists, else MNIST through torchvision). Where Snakemake is not
# installed, a folder .whl of wheels (benchmarks/gpu_wheels.sh makes it) is installed under /tmp first. Time limits:
# BENCH_S (default 180 s) and PRESET_S (default 420 s); the preset's own results stay in $WORKDIR (default
# /tmp/netdyn-window). --smoke runs the same steps at tiny sizes on the CPU (tests/test_window.py; only the benchmark
# rows named in BENCH_ROWS, default the stacked-training one: tests/test_benchmarks.py runs them all).
set -uo pipefail
out=${1:?usage: benchmarks/gpu_window.sh OUT_DIR [--smoke]}
smoke=${2:-}
repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
workdir=${WORKDIR:-/tmp/netdyn-window}
mkdir -p "$out" "$workdir"
out=$(cd "$out" && pwd)
export PYTHONUNBUFFERED=1 PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" TORCH_DEVICE_BACKEND_AUTOLOAD=0

if ! "$python" -c "import snakemake" 2>/dev/null; then
    if ! ls "$repo"/.whl/*.whl >/dev/null 2>&1; then
        echo "gpu_window: Snakemake is not installed and $repo/.whl holds no wheels (make them: benchmarks/gpu_wheels.sh)" >&2
        exit 2
    fi
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/netdyn-site \
        "$repo"/.whl/*.whl || exit 2
    export PYTHONPATH="/tmp/netdyn-site:$PYTHONPATH"
fi

if [ "$smoke" = "--smoke" ]; then
    device=cpu bench_args=(--smoke --rows "${BENCH_ROWS:-stacked}") configs=("$repo/tests/configs/window-smoke.yaml") cores=2 resources=()
else
    device=cuda bench_args=() configs=("$repo/presets/paper-core.yaml") cores=$(nproc) resources=(--resources gpu=1)
    idx=${NETDYN_IDX:-}
    [ -z "$idx" ] && [ -d /usr/share/datasets/fashion-mnist ] && idx=/usr/share/datasets/fashion-mnist
    if [ -n "$idx" ]; then
        printf 'datasets:\n  paper_data: {source: idx, path: %s}\n' "$idx" >"$workdir/data.yaml"
        configs+=("$workdir/data.yaml")
    fi
    # Without hdf5plugin (it is not among the carried wheels: 45 MB) the activation dumps are stored uncompressed.
    if ! "$python" -c "import hdf5plugin" 2>/dev/null; then
        printf 'dumps: {compression: none}\n' >"$workdir/dumps.yaml"
        configs+=("$workdir/dumps.yaml")
    fi
fi

{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || echo "no nvidia-smi"
    "$python" -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
    echo "configs: ${configs[*]}"
} >"$out/machine.txt" 2>&1

cd "$repo" || exit 2
timeout "${BENCH_S:-180}" "$python" -m benchmarks.run --device "$device" "${bench_args[@]}" --output "$out/bench.json" \
    >"$out/bench.txt" 2>&1
echo "benchmark rows: exit $?" >>"$out/machine.txt"
"$python" -m netdyn.cli plan --configfile "${configs[0]}" >"$out/plan.txt" 2>&1

started=$(date +%s)
timeout "${PRESET_S:-420}" "$python" -m snakemake --snakefile "$repo/Snakefile" --directory "$workdir" \
    --configfile "${configs[@]}" --cores "$cores" "${resources[@]}" --keep-going >"$out/workflow.log" 2>&1
status=$?
wall=$(($(date +%s) - started))
"$python" -m benchmarks.window "$workdir" "$out" --wall-s "$wall" --returncode "$status" --config "${configs[@]}" \
    >/dev/null 2>>"$out/workflow.log"
[ -f "$workdir/results/claims.csv" ] && cp "$workdir/results/claims.csv" "$out/claims.csv"
echo "gpu_window: preset exit $status after $wall s; results in $out"
exit "$status"
