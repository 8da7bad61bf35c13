"""Rule front_page: the report's first page, the introduction and the claims scorecard with the figures each claim
bears on (netdyn.frontpage)."""

from netdyn.warmstart import hand_off

hand_off(globals())  # with NETDYN_WARM_START=1, run in a process that has imported torch (netdyn.warmstart)

from pathlib import Path

import pandas as pd

from netdyn.atomic import write_text
from netdyn.claims import CLAIMS
from netdyn.frontpage import claim_figures, front_page
from netdyn.logs import logged

with logged(snakemake.log[0]):
    figures_of = claim_figures({number: claim.roles for number, claim in CLAIMS.items()}, snakemake.params.figure_roles)
    page = front_page(Path(snakemake.input.intro).read_text(), pd.read_csv(snakemake.input.claims), figures_of)
    write_text(snakemake.output[0], page)
