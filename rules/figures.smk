# Tables across runs, the figures of the paper, and the claims scorecard.


localrules:
    figure,
    flatness,
    claims,
    front_page,


# One job per experiment: each run's metrics.csv and events.json (its history and analysis parts merged, its
# training events found) and the experiment's table of them. Light and torch-free, so one job serves every run of
# the experiment (a per-run job cost a second of start-up for a tenth of work); the jobs that reran a run's parts
# rerun this one, and the figures reading the experiment rerun with it either way.
for experiment in EXPERIMENTS:
    members = experiment_runs(experiment)

    rule:
        name:
            f"collect__{experiment}"
        input:
            history=[f"results/runs/{run}/history.csv" for run in members],
            run_json=[f"results/runs/{run}/run.json" for run in members],
            parts=[part for run in members for part in metric_parts(run)],
            code=script_code("collect"),
        output:
            metrics=[f"results/runs/{run}/metrics.csv" for run in members],
            events=[f"results/runs/{run}/events.json" for run in members],
            table=report(
                f"results/tables/{experiment}.csv",
                caption="../report/experiment_table.rst",
                category="Experiment tables",
                subcategory=experiment,
            ),
        log:
            f"results/logs/collect/{experiment}.log",
        localrule: True
        conda:
            "../envs/netdyn.yaml"
        params:
            experiment=experiment,
            runs=members,
            parts={run: metric_parts(run) for run in members},
        script:
            "../workflow_scripts/collect.py"


rule figure:
    input:
        tables=figure_inputs,
        code=lambda wildcards: script_code(
            "figure", f"netdyn.figures.{wildcards.figure}"
        ),
    output:
        png=report(
            "results/figures/{figure}.png",
            caption="../report/figure.rst",
            category="Figures",
            subcategory="Figures",
            labels={"figure": "{figure}"},
        ),
        pdf="results/figures/{figure}.pdf",
        csv=report(
            "results/figures/{figure}.csv",
            caption="../report/figure_numbers.rst",
            category="Figures",
            subcategory="Plotted numbers",
            labels={"figure": "{figure}"},
        ),
    log:
        "results/logs/figure/{figure}.log",
    wildcard_constraints:
        figure="fig[2-9]|figS[123]",
    conda:
        "../envs/netdyn.yaml"
    params:
        roles=lambda wildcards: key_sorted(figure_run_roles(wildcards.figure)),
        settings=lambda wildcards: key_sorted(figure_settings(config, wildcards.figure)),
        experiments=lambda wildcards: key_sorted(figure_experiments(wildcards.figure)),
    script:
        "../workflow_scripts/figure.py"


rule flatness:
    input:
        tables=lambda wildcards: [
            f"results/runs/{run}/{name}"
            for run in flatness_runs()
            for name in ("metrics.csv", "run.json", "events.json")
        ],
        code=script_code("flatness"),
    output:
        report(
            "results/tables/flatness_correlations.csv",
            caption="../report/flatness.rst",
            category="Beyond the paper",
        ),
    log:
        "results/logs/flatness.log",
    conda:
        "../envs/netdyn.yaml"
    params:
        folders=lambda wildcards: [f"results/runs/{run}" for run in flatness_runs()],
    script:
        "../workflow_scripts/flatness.py"


rule front_page:
    input:
        claims="results/claims.csv",
        intro=workflow.source_path("../report/workflow.rst"),
        code=script_code("front_page"),
    output:
        "results/report/front.rst",
    log:
        "results/logs/front_page.log",
    conda:
        "../envs/netdyn.yaml"
    params:
        figure_roles=lambda wildcards: key_sorted(
            {
                figure: sorted(set(figure_run_roles(figure).values()))
                for figure in FIGURES
                if not figure.startswith("figS")
            }
        ),
    script:
        "../workflow_scripts/front_page.py"


rule claims:
    input:
        tables=lambda wildcards: [
            table
            for folder in claim_roles()
            for table in run_tables(folder.removeprefix("results/runs/"))
        ],
        criteria=workflow.source_path("../report/claims.md"),
        code=script_code("claims"),
    output:
        report(
            "results/claims.csv",
            caption="../report/claims.rst",
            category="Claims scorecard",
        ),
    log:
        "results/logs/claims.log",
    conda:
        "../envs/netdyn.yaml"
    params:
        roles=lambda wildcards: key_sorted(claim_roles()),
        context=lambda wildcards: claims_context(),
    script:
        "../workflow_scripts/claims.py"
