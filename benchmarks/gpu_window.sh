#!/usr/bin/env bash
# One GPU window (issues 21 and 22): on a lent GPU machine holding this repository, the GPU benchmark rows and then
# one half of presets/paper-core.yaml, everything measured written to one folder before a deadline.
#
#   benchmarks/gpu_window.sh OUT_DIR --window 1|2|3 [--smoke]
#
# Window 1: the deep BatchNorm nets (fig3_depth; claims 1, 7, 9, 11); window 2: the depth x width grid and the
# grokking net (fig4_*, fig6_grokking; claims 2, 3, 4, 6, 10); window 3: the BatchNorm lag's conditions and the
# shallow nets (fig8_*, fig2_shallow; claims 5, 8, 12). benchmarks/window.py holds the split.
#
# OUT_DIR gets eight files (what the device tool brings back): machine.txt (the machine, then the benchmark rows'
# output), bench.json, plan.txt, workflow.log, summary.json, summary.md, claims.csv and results.tar.gz (the figures
# as PNG, the jobs' logs and benchmark files, each run's run.json and the scorecard's claims.md).
#
# The machine has no network: what it lacks comes in the git-ignored folder .carry (benchmarks/gpu_wheels.sh makes
# it; name it in the device tool's `carry`): .carry/whl, wheels installed under /tmp when Snakemake is missing, and
# .carry/fashion-mnist, the IDX files the preset reads (NETDYN_IDX overrides; else Debian's folder where it exists,
# else MNIST through torchvision). Without hdf5plugin the activation dumps are stored uncompressed.
#
# Time: everything is written by DEADLINE_S seconds after the start (default 500: a device call of timeout_s 540).
# The workflow runs first, with --keep-going, until FALLBACK_S + BENCH_MIN_S + RESERVE_S (default 60 + 60 + 20)
# before the deadline. Stopped there, a second run gets FALLBACK_S more for the experiments whose runs all finished
# training (their analyses, figures and claims; benchmarks/window.py trained). Then the summary and the archive are
# written, and the benchmark rows BENCH_ROWS (default training,basins,Hessian) get what is left, at most BENCH_S
# seconds (default 120; 0 skips them), each row saved as it finishes. The preset's own results stay in WORKDIR
# (default /tmp/netdyn-window).
# --smoke runs the same steps at tiny sizes on the CPU (tests/test_window.py).
set -uo pipefail
usage="usage: benchmarks/gpu_window.sh OUT_DIR --window 1|2|3 [--smoke]"
out=${1:?$usage}
shift
window='' smoke=''
while [ $# -gt 0 ]; do
    case $1 in
    --window) window=${2:-} && shift 2 ;;
    --smoke) smoke=--smoke && shift ;;
    *) echo "gpu_window: unknown argument $1; $usage" >&2 && exit 2 ;;
    esac
done
case $window in 1 | 2 | 3) ;; *) echo "gpu_window: --window must be 1, 2 or 3; $usage" >&2 && exit 2 ;; esac
started=$(date +%s)
repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
workdir=${WORKDIR:-/tmp/netdyn-window}
mkdir -p "$out" "$workdir"
out=$(cd "$out" && pwd)
export PYTHONUNBUFFERED=1 PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" TORCH_DEVICE_BACKEND_AUTOLOAD=0
elapsed() { echo $(($(date +%s) - started)); }

if ! "$python" -c "import snakemake" 2>/dev/null; then
    wheels=${WHEELS:-$repo/.carry/whl}
    if ! ls "$wheels"/*.whl >/dev/null 2>&1; then
        echo "gpu_window: Snakemake is not installed and $wheels holds no wheels (make them: benchmarks/gpu_wheels.sh)" >&2
        exit 2
    fi
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/netdyn-site \
        "$wheels"/*.whl || exit 2
    export PYTHONPATH="$PYTHONPATH:/tmp/netdyn-site"
fi

config="$workdir/window$window.yaml"
"$python" -m benchmarks.window config "$repo/presets/paper-core.yaml" --window "$window" $smoke >"$config" || exit 2
configs=("$config")
if [ -n "$smoke" ]; then
    device=cpu bench_args=(--smoke) rows=${BENCH_ROWS:-stacked} cores=2 resources=()
else
    device=cuda bench_args=() rows=${BENCH_ROWS:-training,basins,Hessian} cores=$(nproc) resources=(--resources gpu=1)
    idx=${NETDYN_IDX:-}
    [ -z "$idx" ] && [ -d "$repo/.carry/fashion-mnist" ] && idx=$repo/.carry/fashion-mnist
    [ -z "$idx" ] && [ -d /usr/share/datasets/fashion-mnist ] && idx=/usr/share/datasets/fashion-mnist
    if [ -n "$idx" ]; then
        printf 'datasets:\n  paper_data: {source: idx, path: %s}\n' "$(cd "$idx" && pwd)" >"$workdir/data.yaml"
        configs+=("$workdir/data.yaml")
    fi
    if ! "$python" -c "import hdf5plugin" 2>/dev/null; then
        printf 'dumps: {compression: none}\n' >"$workdir/dumps.yaml"
        configs+=("$workdir/dumps.yaml")
    fi
fi

{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || echo "no nvidia-smi"
    "$python" -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
    echo "window $window $smoke; configs: ${configs[*]}"
} >"$out/machine.txt" 2>&1

cd "$repo" || exit 2
"$python" -m netdyn.cli plan --configfile "$config" >"$out/plan.txt" 2>&1

# The workflow first (its scorecard is worth more than a benchmark row), leaving BENCH_MIN_S to the rows after it
# and FALLBACK_S to a second run over the experiments that finished training, should the first be stopped.
limit=$((${DEADLINE_S:-500} - ${RESERVE_S:-20} - ${BENCH_MIN_S:-60} - ${FALLBACK_S:-60} - $(elapsed)))
[ "$limit" -lt 10 ] && limit=10
preset_started=$(date +%s)
timeout -k 10 "$limit" "$python" -m snakemake --snakefile "$repo/Snakefile" --directory "$workdir" \
    --configfile "${configs[@]}" --cores "$cores" "${resources[@]}" --keep-going >"$out/workflow.log" 2>&1
status=$?
[ "$status" = 124 ] && echo "gpu_window: the workflow was stopped at its limit of $limit s" >>"$out/workflow.log"
if [ "$status" != 0 ] && "$python" -m benchmarks.window trained "$config" "$workdir" >"$workdir/trained.yaml" \
    2>>"$out/workflow.log"; then
    second=$((${DEADLINE_S:-500} - ${RESERVE_S:-20} - ${BENCH_MIN_S:-60} - $(elapsed)))
    if [ "$second" -ge 10 ]; then
        echo "gpu_window: those analysed and scored in a second run of at most $second s" >>"$out/workflow.log"
        (cd "$workdir" && "$python" -m netdyn.unlock) >>"$out/workflow.log" 2>&1
        timeout -k 10 "$second" "$python" -m snakemake --snakefile "$repo/Snakefile" --directory "$workdir" \
            --configfile "$workdir/trained.yaml" "${configs[@]:1}" --cores "$cores" "${resources[@]}" --keep-going \
            --rerun-incomplete >>"$out/workflow.log" 2>&1
        echo "gpu_window: that run's exit status: $?" >>"$out/workflow.log"
    fi
fi
wall=$(($(date +%s) - preset_started))
"$python" -m benchmarks.window summary "$workdir" "$out" --wall-s "$wall" --returncode "$status" \
    --config "${configs[@]}" >/dev/null 2>>"$out/workflow.log"
[ -f "$workdir/results/claims.csv" ] && cp "$workdir/results/claims.csv" "$out/claims.csv"
(cd "$workdir" && {
    find results/figures -name '*.png'
    find results/logs results/benchmarks -type f
    find results -name run.json -o -name claims.md
} 2>/dev/null | tar -czf "$out/results.tar.gz" -T - 2>>"$out/workflow.log")

# Each row is written to bench.json as it finishes: a row cut off at the limit loses only itself.
bench_limit=$((${DEADLINE_S:-500} - 5 - $(elapsed)))
[ "$bench_limit" -gt "${BENCH_S:-120}" ] && bench_limit=${BENCH_S:-120}
if [ "$bench_limit" -gt 0 ]; then
    echo "--- benchmark rows ($rows), at most $bench_limit s ---" >>"$out/machine.txt"
    timeout -k 5 "$bench_limit" "$python" -m benchmarks.run --device "$device" "${bench_args[@]}" --rows "$rows" \
        --output "$out/bench.json" >>"$out/machine.txt" 2>&1
    echo "benchmark rows: exit $?" >>"$out/machine.txt"
fi
echo "gpu_window: window $window, workflow exit $status after $wall s (limit $limit s), all done at $(elapsed) s; in $out"
exit "$status"
