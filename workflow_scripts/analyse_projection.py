"""Rule analyse_projection: 2-D SVD-bottleneck coordinates of chosen digits (netdyn.projection)."""

from netdyn.atomic import write_csv
from netdyn.pipeline import projection_steps, projection_table
from netdyn.workflow import logged

with logged(snakemake.log[0]):
    steps = projection_steps(
        snakemake.input.history, snakemake.input.run_json, snakemake.params.steps, snakemake.params.which
    )
    table = projection_table(
        snakemake.wildcards.run,
        snakemake.input.snapshots,
        snakemake.input.data,
        steps,
        snakemake.params.train_spec,
        digits=snakemake.params.digits,
        per_digit=snakemake.params.per_digit,
    )
    write_csv(snakemake.output.curves, table)
