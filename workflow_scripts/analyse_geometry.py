"""Rule analyse_geometry: cosine distances to class centres and between centres (netdyn.geometry)."""

from netdyn.atomic import write_csv
from netdyn.pipeline import geometry_tables
from netdyn.workflow import logged

with logged(snakemake.log[0]):
    curves, metrics = geometry_tables(
        snakemake.wildcards.run,
        snakemake.input.snapshots,
        snakemake.input.get("activations"),  # absent when the run has no dumps: fields computed from snapshots
        snakemake.input.data,
        snakemake.params.steps,
        train_spec=snakemake.params.train_spec,
        samples=snakemake.params.samples,
        digit=snakemake.params.digit,
        first=snakemake.params.first,
    )
    write_csv(snakemake.output.curves, curves)
    write_csv(snakemake.output.metrics, metrics)
