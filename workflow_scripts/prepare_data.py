"""Rule prepare_data: one dataset as results/data/{dataset}.h5 (netdyn.data)."""

from netdyn.warmstart import hand_off

hand_off(globals())  # with NETDYN_WARM_START=1, run in a process that has imported torch (netdyn.warmstart)

from netdyn.data import prepare
from netdyn.logs import logged

with logged(snakemake.log[0]):
    prepare(snakemake.params.definition, snakemake.output[0])
