rule dump_activations:
    input:
        snapshots="results/runs/{run}/snapshots",
        data=run_dataset,
        code=script_code("dump_activations"),
    output:
        dump_directory(),
    log:
        "results/logs/dump_activations/{run}.log",
    benchmark:
        "results/benchmarks/dump_activations/{run}.tsv"
    conda:
        "../envs/netdyn.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        steps=run_dump_steps,
        samples=analysis_setting("samples"),
        train_spec=lambda wildcards: RUNS[wildcards.run]["train"],
        dtype=DUMPS["dtype"],
        compression=DUMPS["compression"],
    script:
        "../workflow_scripts/dump_activations.py"
