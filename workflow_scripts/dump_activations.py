"""Rule dump_activations: every analysed snapshot's fields and outputs (netdyn.activations)."""

from netdyn.activations import dump_run
from netdyn.logs import logged

with logged(snakemake.log[0]):
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
