"""netdyn: network-dynamics analyses of MLP training (arXiv 2501.02436) as a library and a Snakemake workflow."""

__version__ = "0.1.0"
