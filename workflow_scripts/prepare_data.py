"""Rule prepare_data: one dataset as results/data/{dataset}.h5 (netdyn.data)."""

from netdyn.data import prepare
from netdyn.logs import logged

with logged(snakemake.log[0]):
    prepare(snakemake.params.definition, snakemake.output[0])
