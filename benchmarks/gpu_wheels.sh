#!/usr/bin/env bash
# What benchmarks/gpu_window.sh needs on the lent GPU machine (Python 3.12, x86-64, no network, torch and the
# scientific stack already there), in one git-ignored folder to name in the device tool's `carry` (default .carry,
# about 56 MB of its 64 MiB): whl/, the pinned packages of requirements.lock that its image lacks (Snakemake and its
# plugins above all; hdf5plugin, 45 MB, stays behind: without it the window writes uncompressed dumps), and
# fashion-mnist/, a copy of the four Fashion-MNIST IDX files (Debian's dataset-fashion-mnist, 30 MB).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$repo/.venv/bin/python}
carry=${1:-$repo/.carry}
target=$carry/whl
present='torch|torchvision|triton|nvidia-.*|cuda-.*|numpy|scipy|pandas|matplotlib|contourpy|kiwisolver|fonttools|pillow'
present+='|cycler|pyparsing|python-dateutil|tzdata|six|h5py|scikit-learn|joblib|threadpoolctl|sympy|mpmath|networkx'
present+='|packaging|pyyaml|jinja2|markupsafe|requests|urllib3|idna|certifi|charset-normalizer|attrs|filelock|fsspec'
present+='|psutil|tqdm|typing-extensions|pygments|click|cloudpickle|sortedcontainers|mypy-extensions|pathspec|tabulate'
present+='|wrapt|narwhals|pytest|pluggy|iniconfig|hypothesis|ruff|black|snakefmt|shfmt-py|pytokens|mlxtend|hdf5plugin'
mkdir -p "$target"
sed 's/_/-/g' "$repo/requirements.lock" | grep -v -i -E "^($present)==" | while read -r requirement; do
    # Binary wheels for the machine's Python; the few pure-Python packages published only as sources are built here.
    "$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$target" "$requirement" 2>/dev/null || "$python" -m pip wheel -q --no-deps -w "$target" "$requirement"
done
idx=/usr/share/datasets/fashion-mnist
if [ -d "$idx" ]; then
    mkdir -p "$carry/fashion-mnist" && cp "$idx"/*-ubyte.gz "$carry/fashion-mnist/"
else
    echo "gpu_wheels: $idx is missing (apt-get install dataset-fashion-mnist): the window would read MNIST online" >&2
fi
du -sh "$carry"/*
