"""Rule collect__<experiment>: each run's metrics.csv (long format) and events.json, and the experiment's table of
every run's metrics with its status and settings (netdyn.metrics, netdyn.events, netdyn.tables)."""

from netdyn.warmstart import hand_off

hand_off(globals())  # with NETDYN_WARM_START=1, run in a process that has imported torch (netdyn.warmstart)

import json
from pathlib import Path

from netdyn.atomic import write_csv, write_text
from netdyn.logs import logged
from netdyn.metrics import collect
from netdyn.tables import experiment_table, load_runs

with logged(snakemake.log[0]):
    inputs, outputs, params = snakemake.input, snakemake.output, snakemake.params
    per_run = zip(params.runs, inputs.history, inputs.run_json, outputs.metrics, outputs.events, strict=True)
    for run, history, run_json, metrics_path, events_path in per_run:
        metrics, events = collect(run, history, run_json, params.parts[run])
        write_csv(metrics_path, metrics)
        write_text(events_path, json.dumps(events, indent=2))
    write_csv(outputs.table, experiment_table(load_runs([Path(path).parent for path in outputs.metrics])))
    print(f"collected {len(params.runs)} runs into {outputs.table}")
