"""Rule import_run: a run trained elsewhere as netdyn snapshots, history.csv and run.json (netdyn.external)."""

from netdyn.warmstart import hand_off

hand_off(globals())  # with NETDYN_WARM_START=1, run in a process that has imported torch (netdyn.warmstart)

from netdyn.external import import_run
from netdyn.logs import logged

with logged(snakemake.log[0]):
    import_run(
        snakemake.params.spec,
        snakemake.input.data,
        snakemake.output.snapshots,
        snakemake.output.history,
        snakemake.output.run_json,
    )
