# One job per run and analysis stage, covering every analysed snapshot of the run (docs/design.md "The DAG"); the
# runs of a stack group share one job per stage (below).
# Each rule is one entry of the stage registry (netdyn/stages/__init__.py): its inputs, settings and code come
# from there; its outputs are named after the stage's tables (docs/adding-an-analysis.md).


rule analyse_rpd:
    input:
        unpack(stage_inputs("rpd")),
    output:
        rpd="results/runs/{run}/rpd.csv",
        neurons="results/runs/{run}/neurons.csv",
        metrics="results/runs/{run}/parts/rpd.csv",
    log:
        "results/logs/analyse_rpd/{run}.log",
    benchmark:
        "results/benchmarks/analyse_rpd/{run}.tsv"
    wildcard_constraints:
        run=SINGLE_PATTERN,
    conda:
        "../envs/netdyn.yaml"
    resources:
        gpu=1,
    params:
        **stage_params("rpd"),
    script:
        "../workflow_scripts/analyse.py"


rule analyse_pruning:
    input:
        unpack(stage_inputs("pruning")),
    output:
        metrics="results/runs/{run}/parts/pruning.csv",
    log:
        "results/logs/analyse_pruning/{run}.log",
    benchmark:
        "results/benchmarks/analyse_pruning/{run}.tsv"
    wildcard_constraints:
        run=SINGLE_PATTERN,
    conda:
        "../envs/netdyn.yaml"
    resources:
        gpu=1,
    params:
        **stage_params("pruning"),
    script:
        "../workflow_scripts/analyse.py"


rule analyse_geometry:
    input:
        unpack(stage_inputs("geometry")),
    output:
        geometry="results/runs/{run}/geometry.csv",
        metrics="results/runs/{run}/parts/geometry.csv",
    log:
        "results/logs/analyse_geometry/{run}.log",
    benchmark:
        "results/benchmarks/analyse_geometry/{run}.tsv"
    wildcard_constraints:
        run=SINGLE_PATTERN,
    conda:
        "../envs/netdyn.yaml"
    params:
        **stage_params("geometry"),
    script:
        "../workflow_scripts/analyse.py"


rule analyse_basins:
    input:
        unpack(stage_inputs("basins")),
    output:
        basins="results/runs/{run}/basins.csv",
        metrics="results/runs/{run}/parts/basins.csv",
    log:
        "results/logs/analyse_basins/{run}.log",
    benchmark:
        "results/benchmarks/analyse_basins/{run}.tsv"
    wildcard_constraints:
        run=SINGLE_PATTERN,
    conda:
        "../envs/netdyn.yaml"
    resources:
        gpu=1,
    params:
        **stage_params("basins"),
    script:
        "../workflow_scripts/analyse.py"


rule analyse_projection:
    input:
        unpack(stage_inputs("projection")),
    output:
        projection="results/runs/{run}/projection.csv",
    log:
        "results/logs/analyse_projection/{run}.log",
    benchmark:
        "results/benchmarks/analyse_projection/{run}.tsv"
    wildcard_constraints:
        run=SINGLE_PATTERN,
    conda:
        "../envs/netdyn.yaml"
    resources:
        gpu=1,
    params:
        **stage_params("projection"),
    script:
        "../workflow_scripts/analyse.py"


rule analyse_bn_modes:
    input:
        unpack(stage_inputs("bn_modes")),
    output:
        metrics="results/runs/{run}/parts/bn_modes.csv",
    log:
        "results/logs/analyse_bn_modes/{run}.log",
    benchmark:
        "results/benchmarks/analyse_bn_modes/{run}.tsv"
    wildcard_constraints:
        run=SINGLE_PATTERN,
    conda:
        "../envs/netdyn.yaml"
    resources:
        gpu=1,
    params:
        **stage_params("bn_modes"),
    script:
        "../workflow_scripts/analyse.py"


rule analyse_hessian:
    input:
        unpack(stage_inputs("hessian")),
    output:
        hessian="results/runs/{run}/hessian.csv",
        metrics="results/runs/{run}/parts/hessian.csv",
    log:
        "results/logs/analyse_hessian/{run}.log",
    benchmark:
        "results/benchmarks/analyse_hessian/{run}.tsv"
    wildcard_constraints:
        run=SINGLE_PATTERN,
    conda:
        "../envs/netdyn.yaml"
    resources:
        gpu=1,
    params:
        **stage_params("hessian"),
    script:
        "../workflow_scripts/analyse.py"


rule analyse_collapse:
    input:
        unpack(stage_inputs("collapse")),
    output:
        metrics="results/runs/{run}/parts/collapse.csv",
    log:
        "results/logs/analyse_collapse/{run}.log",
    benchmark:
        "results/benchmarks/analyse_collapse/{run}.tsv"
    wildcard_constraints:
        run=SINGLE_PATTERN,
    conda:
        "../envs/netdyn.yaml"
    params:
        **stage_params("collapse"),
    script:
        "../workflow_scripts/analyse.py"


rule analyse_cka:
    input:
        unpack(stage_inputs("cka")),
    output:
        cka="results/runs/{run}/cka.csv",
        metrics="results/runs/{run}/parts/cka.csv",
    log:
        "results/logs/analyse_cka/{run}.log",
    benchmark:
        "results/benchmarks/analyse_cka/{run}.tsv"
    wildcard_constraints:
        run=SINGLE_PATTERN,
    conda:
        "../envs/netdyn.yaml"
    params:
        **stage_params("cka"),
    script:
        "../workflow_scripts/analyse.py"


# A stack group's runs share one job per stage: they were trained together, so a change to any of them reruns them
# all anyway, and one job pays one start-up. Outputs per member, as above.
for group in STACKS:
    members = STACKS[group]
    for stage in group_stages(group):

        rule:
            name:
                group_rule(f"analyse_{stage}", group)
            input:
                **group_lists([run_stage_inputs(stage, run) for run in members]),
                code=script_code("analyse", f"netdyn.stages.{stage}"),
            output:
                **group_lists([stage_table_paths(stage, run) for run in members]),
            log:
                f"results/logs/stacks/{group_rule(f'analyse_{stage}', group)}.log",
            benchmark:
                f"results/benchmarks/stacks/{group_rule(f'analyse_{stage}', group)}.tsv"
            conda:
                "../envs/netdyn.yaml"
            resources:
                **group_resources(f"analyse_{stage}", gpu=int(STAGES[stage].uses_gpu)),
            params:
                **group_lists([run_stage_params(stage, run) for run in members]),
                stage=stage,
                runs=members,
            script:
                "../workflow_scripts/analyse.py"
