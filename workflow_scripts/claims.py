"""Rule claims: the verdict on each claim of the scorecard, computed from the collected tables (netdyn.claims)."""

from netdyn.warmstart import hand_off

hand_off(globals())  # with NETDYN_WARM_START=1, run in a process that has imported torch (netdyn.warmstart)

from netdyn.atomic import write_csv
from netdyn.claims import evaluate
from netdyn.logs import logged
from netdyn.tables import load_runs

with logged(snakemake.log[0]):
    by_role = {}
    for folder, role in snakemake.params.roles.items():
        by_role.setdefault(role, []).append(folder)
    roles = {folder.removeprefix("results/runs/"): role for folder, role in snakemake.params.roles.items()}
    tables = {role: load_runs(folders, roles=roles) for role, folders in by_role.items()}
    scorecard = evaluate(tables, snakemake.params.context)
    write_csv(snakemake.output[0], scorecard)
    print(scorecard.to_string(index=False))
