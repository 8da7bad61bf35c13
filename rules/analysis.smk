# One job per run and analysis, covering every analysed snapshot of the run (design.md "The DAG").


rule analyse_rpd:
    input:
        unpack(activation_input),
        snapshots="results/runs/{run}/snapshots",
        data=run_dataset,
        code=library(
            "rpd",
            "modes",
            "pruning",
            "pipeline",
            "metrics",
            "activations",
            "snapshots",
            "samples",
            "data",
            "layers",
        ),
    output:
        curves="results/runs/{run}/rpd.csv",
        neurons="results/runs/{run}/neurons.csv",
        metrics="results/runs/{run}/parts/rpd.csv",
    log:
        "results/logs/analyse_rpd/{run}.log",
    benchmark:
        "results/benchmarks/analyse_rpd/{run}.tsv"
    conda:
        "../envs/netdyn.yaml"
    resources:
        gpu=1,
    params:
        steps=analysis_steps("rpd"),
        train_spec=lambda wildcards: RUNS[wildcards.run]["train"],
        settings=lambda wildcards: {
            "samples": RUNS[wildcards.run]["analysis"]["samples"],
            "bins": RUNS[wildcards.run]["analysis"]["rpd_bins"],
            "opm_alpha": RUNS[wildcards.run]["analysis"]["opm_alpha"],
            "opm_min_score": RUNS[wildcards.run]["analysis"]["opm_min_score"],
        },
    script:
        "../workflow_scripts/analyse_rpd.py"


rule analyse_pruning:
    input:
        snapshots="results/runs/{run}/snapshots",
        data=run_dataset,
        code=library(
            "pruning",
            "pipeline",
            "metrics",
            "activations",
            "snapshots",
            "samples",
            "evaluate",
            "layers",
            "data",
        ),
    output:
        metrics="results/runs/{run}/parts/pruning.csv",
    log:
        "results/logs/analyse_pruning/{run}.log",
    benchmark:
        "results/benchmarks/analyse_pruning/{run}.tsv"
    conda:
        "../envs/netdyn.yaml"
    resources:
        gpu=1,
    params:
        steps=analysis_steps("pruning"),
        train_spec=lambda wildcards: RUNS[wildcards.run]["train"],
        settings=analysis_setting("lp_train_samples", "test_samples"),
    script:
        "../workflow_scripts/analyse_pruning.py"


rule analyse_geometry:
    input:
        unpack(activation_input),
        snapshots="results/runs/{run}/snapshots",
        data=run_dataset,
        code=library(
            "geometry",
            "pipeline",
            "metrics",
            "activations",
            "snapshots",
            "samples",
            "data",
            "layers",
        ),
    output:
        curves="results/runs/{run}/geometry.csv",
        metrics="results/runs/{run}/parts/geometry.csv",
    log:
        "results/logs/analyse_geometry/{run}.log",
    benchmark:
        "results/benchmarks/analyse_geometry/{run}.tsv"
    conda:
        "../envs/netdyn.yaml"
    params:
        steps=analysis_steps("geometry"),
        train_spec=lambda wildcards: RUNS[wildcards.run]["train"],
        samples=analysis_setting("samples"),
        digit=analysis_setting("geometry_digit"),
        first=analysis_setting("geometry_first"),
    script:
        "../workflow_scripts/analyse_geometry.py"


rule analyse_basins:
    input:
        snapshots="results/runs/{run}/snapshots",
        data=run_dataset,
        code=library(
            "basins", "pipeline", "metrics", "snapshots", "samples", "data", "layers"
        ),
    output:
        curves="results/runs/{run}/basins.csv",
        metrics="results/runs/{run}/parts/basins.csv",
    log:
        "results/logs/analyse_basins/{run}.log",
    benchmark:
        "results/benchmarks/analyse_basins/{run}.tsv"
    conda:
        "../envs/netdyn.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        steps=analysis_steps("basins"),
        train_spec=lambda wildcards: RUNS[wildcards.run]["train"],
        settings=analysis_setting(
            "samples",
            "input_amplitudes",
            "weight_amplitudes",
            "input_repeats",
            "weight_draws",
            "weight_noise",
            "tracked_input_amplitudes",
            "tracked_input_multiples",
            "basin_fraction",
            "seed",
        ),
    script:
        "../workflow_scripts/analyse_basins.py"


rule analyse_projection:
    input:
        snapshots="results/runs/{run}/snapshots",
        history="results/runs/{run}/history.csv",
        run_json="results/runs/{run}/run.json",
        data=run_dataset,
        code=library(
            "projection",
            "pipeline",
            "metrics",
            "dynamics",
            "snapshots",
            "samples",
            "evaluate",
            "data",
            "layers",
        ),
    output:
        curves="results/runs/{run}/projection.csv",
    log:
        "results/logs/analyse_projection/{run}.log",
    benchmark:
        "results/benchmarks/analyse_projection/{run}.tsv"
    conda:
        "../envs/netdyn.yaml"
    resources:
        gpu=1,
    params:
        steps=analysis_steps("projection"),
        which=analysis_setting("projection_steps"),
        train_spec=lambda wildcards: RUNS[wildcards.run]["train"],
        digits=analysis_setting("projection_digits"),
        per_digit=analysis_setting("projection_per_digit"),
    script:
        "../workflow_scripts/analyse_projection.py"


rule analyse_bn_modes:
    input:
        snapshots="results/runs/{run}/snapshots",
        data=run_dataset,
        code=library(
            "evaluate", "pipeline", "metrics", "snapshots", "samples", "train", "data"
        ),
    output:
        metrics="results/runs/{run}/parts/bn_modes.csv",
    log:
        "results/logs/analyse_bn_modes/{run}.log",
    benchmark:
        "results/benchmarks/analyse_bn_modes/{run}.tsv"
    conda:
        "../envs/netdyn.yaml"
    resources:
        gpu=1,
    params:
        steps=analysis_steps("bn_modes"),
        train_spec=lambda wildcards: RUNS[wildcards.run]["train"],
        test_samples=analysis_setting("test_samples"),
    script:
        "../workflow_scripts/analyse_bn_modes.py"


rule collect:
    input:
        history="results/runs/{run}/history.csv",
        run_json="results/runs/{run}/run.json",
        parts=metric_parts,
        code=library("metrics", "dynamics"),
    output:
        metrics="results/runs/{run}/metrics.csv",
        events="results/runs/{run}/events.json",
    log:
        "results/logs/collect/{run}.log",
    benchmark:
        "results/benchmarks/collect/{run}.tsv"
    conda:
        "../envs/netdyn.yaml"
    params:
        classes=lambda wildcards: RUNS[wildcards.run]["model"]["classes"],
    script:
        "../workflow_scripts/collect.py"
