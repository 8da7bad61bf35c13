"""Rule collect: a run's metrics.csv (long format) and events.json (netdyn.metrics, netdyn.dynamics)."""

import json

from netdyn.atomic import write_csv, write_text
from netdyn.metrics import collect
from netdyn.workflow import logged

with logged(snakemake.log[0]):
    metrics, events = collect(
        snakemake.wildcards.run,
        snakemake.input.history,
        snakemake.input.run_json,
        snakemake.input.parts,
    )
    write_csv(snakemake.output.metrics, metrics)
    write_text(snakemake.output.events, json.dumps(events, indent=2))
