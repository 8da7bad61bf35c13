"""Rule analyse_geometry: cosine distances to class centres and between centres (netdyn.geometry)."""

from netdyn.atomic import write_csv
from netdyn.pipeline import geometry_tables
from netdyn.workflow import logged

with logged(snakemake.log[0]):
    curves, metrics = geometry_tables(
        snakemake.wildcards.run,
        snakemake.input.activations,
        snakemake.input.data,
        snakemake.params.steps,
        digit=snakemake.params.digit,
        first=snakemake.params.first,
    )
    write_csv(snakemake.output.curves, curves)
    write_csv(snakemake.output.metrics, metrics)
