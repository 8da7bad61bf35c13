rule train:
    input:
        data=run_dataset,
        code=script_code("train"),
    output:
        snapshots=directory("results/runs/{run}/snapshots"),
        history="results/runs/{run}/history.csv",
        run_json="results/runs/{run}/run.json",
    log:
        "results/logs/train/{run}.log",
    benchmark:
        "results/benchmarks/train/{run}.tsv"
    wildcard_constraints:
        run=SINGLE_PATTERN,
    conda:
        "../envs/netdyn.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        spec=run_training_spec,
    script:
        "../workflow_scripts/train.py"


# One rule per stack group: its runs train together in one job (netdyn.stacked). Changing any member's training
# settings reruns the group's job, and so every member's downstream jobs, and nothing of other groups.
for group, members in STACKS.items():

    rule:
        name:
            group_rule("train", group)
        input:
            data=f"results/data/{RUNS[members[0]]['dataset']}.h5",
            code=script_code("train_stack"),
        output:
            snapshots=[directory(f"results/runs/{run}/snapshots") for run in members],
            history=[f"results/runs/{run}/history.csv" for run in members],
            run_json=[f"results/runs/{run}/run.json" for run in members],
        log:
            f"results/logs/stacks/{group_rule('train', group)}.log",
        benchmark:
            f"results/benchmarks/stacks/{group_rule('train', group)}.tsv"
        conda:
            "../envs/netdyn.yaml"
        threads: 1
        resources:
            **group_resources("train", gpu=1),
        params:
            group=group,
            specs=[training_spec(RUNS[run]) for run in members],
        script:
            "../workflow_scripts/train_stack.py"


ruleorder: import_run > train


rule import_run:
    input:
        checkpoints=external_checkpoints,
        data=run_dataset,
        code=script_code("import_run"),
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
