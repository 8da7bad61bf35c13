"""Rule train: one run's snapshots, history.csv and run.json (netdyn.train)."""

from netdyn.warmstart import hand_off

hand_off(globals())  # with NETDYN_WARM_START=1, run in a process that has imported torch (netdyn.warmstart)

from netdyn.gpus import job_gpu_slot
from netdyn.logs import logged
from netdyn.train import train_run

with logged(snakemake.log[0]):
    slot = job_gpu_slot(snakemake.resources)  # before CUDA starts: this job's own GPU on a multi-GPU machine
    train_run(
        snakemake.params.spec,
        snakemake.input.data,
        snakemake.output.snapshots,
        snakemake.output.history,
        snakemake.output.run_json,
        threads=snakemake.threads,
    )
