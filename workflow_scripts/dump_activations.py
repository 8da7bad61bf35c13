"""Rule dump_activations: every analysed snapshot's fields and outputs (netdyn.activations)."""

from netdyn.warmstart import hand_off

hand_off(globals())  # with NETDYN_WARM_START=1, run in a process that has imported torch (netdyn.warmstart)

from netdyn.activations import dump_run
from netdyn.gpus import job_gpu_slot
from netdyn.logs import logged

with logged(snakemake.log[0]):
    slot = job_gpu_slot(snakemake.resources)  # before CUDA starts: this job's own GPU on a multi-GPU machine
    dump_run(
        snakemake.input.snapshots,
        snakemake.input.data,
        snakemake.output[0],
        run=snakemake.wildcards.run,
        steps=snakemake.params.steps,
        train_spec=snakemake.params.train_spec,
        samples=snakemake.params.samples,
        dtype=snakemake.params.dtype,
        compression=snakemake.params.compression,
    )
