rule train:
    input:
        data=run_dataset,
        code=code_inputs("train"),
    output:
        snapshots=directory("results/runs/{run}/snapshots"),
        history="results/runs/{run}/history.csv",
        run_json="results/runs/{run}/run.json",
    log:
        "results/logs/train/{run}.log",
    benchmark:
        "results/benchmarks/train/{run}.tsv"
    conda:
        "../envs/netdyn.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        spec=run_training_spec,
    script:
        "../workflow_scripts/train.py"


ruleorder: import_run > train


rule import_run:
    input:
        checkpoints=external_checkpoints,
        data=run_dataset,
        code=code_inputs("import_run"),
    output:
        snapshots=directory("results/runs/{run}/snapshots"),
        history="results/runs/{run}/history.csv",
        run_json="results/runs/{run}/run.json",
    log:
        "results/logs/import_run/{run}.log",
    benchmark:
        "results/benchmarks/import_run/{run}.tsv"
    wildcard_constraints:
        run=EXTERNAL_PATTERN,
    conda:
        "../envs/netdyn.yaml"
    params:
        spec=run_training_spec,
    script:
        "../workflow_scripts/import_run.py"
