rule dump_activations:
    input:
        snapshots="results/runs/{run}/snapshots",
        data=run_dataset,
        code=library("activations", "snapshots", "samples", "data", "layers", "models"),
    output:
        dump_directory(),
    params:
        steps=analysis_setting("steps"),
        samples=analysis_setting("samples"),
        test_samples=analysis_setting("test_samples"),
        train_spec=lambda wildcards: RUNS[wildcards.run]["train"],
        dtype=DUMPS["dtype"],
    threads: 1
    resources:
        gpu=1,
    log:
        "results/logs/dump_activations/{run}.log",
    benchmark:
        "results/benchmarks/dump_activations/{run}.tsv"
    conda:
        "../envs/netdyn.yaml"
    script:
        "../workflow_scripts/dump_activations.py"
