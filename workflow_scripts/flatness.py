"""Rule flatness: Spearman correlations of each flatness measure with test accuracy across the sweep runs of Fig. S1,
with bootstrap intervals (netdyn.correlations)."""

from netdyn.warmstart import hand_off

hand_off(globals())  # with NETDYN_WARM_START=1, run in a process that has imported torch (netdyn.warmstart)

from netdyn.atomic import write_csv
from netdyn.correlations import flatness_correlations
from netdyn.logs import logged
from netdyn.tables import live_runs, load_runs, scalars

with logged(snakemake.log[0]):
    tables = load_runs(snakemake.params.folders)
    runs = live_runs(tables.runs)["run"] if len(tables.runs) else []
    table = flatness_correlations(scalars(tables), list(runs))
    write_csv(snakemake.output[0], table)
    print(table.to_string(index=False))
