rule train:
    input:
        data=run_dataset,
        code=library("train", "models", "layers", "snapshots", "evaluate", "data", "atomic"),
    output:
        snapshots=directory("results/runs/{run}/snapshots"),
        history="results/runs/{run}/history.csv",
        run_json="results/runs/{run}/run.json",
    params:
        spec=run_spec,
    threads: 1
    resources:
        gpu=1,
    log:
        "results/logs/train/{run}.log",
    benchmark:
        "results/benchmarks/train/{run}.tsv"
    conda:
        "../envs/netdyn.yaml"
    script:
        "../workflow_scripts/train.py"
