"""Rule figure: one figure of the paper, its PDF and the CSV of the numbers it plots (netdyn.figures)."""

from netdyn.warmstart import hand_off

hand_off(globals())  # with NETDYN_WARM_START=1, run in a process that has imported torch (netdyn.warmstart)

import importlib

from netdyn.figures import style
from netdyn.logs import logged
from netdyn.tables import load_runs

with logged(snakemake.log[0]):
    roles = {folder.removeprefix("results/runs/"): role for folder, role in snakemake.params.roles.items()}
    tables = load_runs(snakemake.params.roles, roles=roles)
    module = importlib.import_module(f"netdyn.figures.{snakemake.wildcards.figure}")
    figure, plotted = module.draw(tables, **snakemake.params.settings)
    style.save(figure, plotted, snakemake.output.png, snakemake.output.pdf, snakemake.output.csv)
