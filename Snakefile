"""netdyn: the network-dynamics analyses of arXiv 2501.02436 as a workflow. See README.md."""

from snakemake.utils import min_version

min_version("9.0")


import os

# The report's first page: the introduction with the claims scorecard (rule front_page), once a run has made it.
FRONT_PAGE = os.path.abspath("results/report/front.rst")


report: FRONT_PAGE if os.path.exists(FRONT_PAGE) else "report/workflow.rst"


# The default experiment set, unless `--configfile` names another (a preset replaces it, never merges).
if not workflow.config_settings.configfiles:

    configfile: "config.yaml"


include: "rules/common.smk"


wildcard_constraints:
    run=RUN_ID_PATTERN,
    dataset=r"[a-z][a-z0-9_]*",


include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/activations.smk"
include: "rules/analysis.smk"
include: "rules/figures.smk"


rule all:
    default_target: True
    input:
        all_outputs(),
