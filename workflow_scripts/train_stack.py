"""Rule train_<experiment>_stack<k>: one stack group's runs trained together (netdyn.stacked)."""

from netdyn.warmstart import hand_off

hand_off(globals())  # with NETDYN_WARM_START=1, run in a process that has imported torch (netdyn.warmstart)

from netdyn.gpus import job_gpu_slot
from netdyn.logs import logged
from netdyn.stacked import train_group
from netdyn.train import RunPaths

with logged(snakemake.log[0]):
    slot = job_gpu_slot(snakemake.resources)  # before CUDA starts: this job's own GPU on a multi-GPU machine
    outputs = snakemake.output
    train_group(
        snakemake.params.specs,
        snakemake.input.data,
        [RunPaths(*paths) for paths in zip(outputs.snapshots, outputs.history, outputs.run_json, strict=True)],
        threads=snakemake.threads,
        name=snakemake.params.group,
    )
