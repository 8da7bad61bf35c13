"""Rule analyse_bn_modes: test accuracy with BatchNorm in eval and in train mode (netdyn.evaluate)."""

from netdyn.atomic import write_csv
from netdyn.pipeline import bn_mode_table
from netdyn.workflow import logged

with logged(snakemake.log[0]):
    metrics = bn_mode_table(
        snakemake.wildcards.run,
        snakemake.input.snapshots,
        snakemake.input.data,
        snakemake.params.steps,
        snakemake.params.train_spec,
        test_samples=snakemake.params.test_samples,
    )
    write_csv(snakemake.output.metrics, metrics)
