"""Rule collect: a run's metrics.csv (long format) and events.json (netdyn.metrics, netdyn.events)."""

import json

from netdyn.atomic import write_csv, write_text
from netdyn.logs import logged
from netdyn.metrics import collect

with logged(snakemake.log[0]):
    metrics, events = collect(
        snakemake.wildcards.run,
        snakemake.input.history,
        snakemake.input.run_json,
        snakemake.input.parts,
    )
    write_csv(snakemake.output.metrics, metrics)
    write_text(snakemake.output.events, json.dumps(events, indent=2))
