"""Rule train: one run's snapshots, history.csv and run.json (netdyn.train)."""

from netdyn.logs import logged
from netdyn.train import train_run

with logged(snakemake.log[0]):
    train_run(
        snakemake.params.spec,
        snakemake.input.data,
        snakemake.output.snapshots,
        snakemake.output.history,
        snakemake.output.run_json,
        threads=snakemake.threads,
    )
