localrules:
    prepare_data,


rule prepare_data:
    input:
        code=script_code("prepare_data"),
    output:
        "results/data/{dataset}.h5",
    log:
        "results/logs/prepare_data/{dataset}.log",
    conda:
        "../envs/netdyn.yaml"
    params:
        definition=lambda wildcards: dataset_definition(config, wildcards.dataset),
    script:
        "../workflow_scripts/prepare_data.py"
