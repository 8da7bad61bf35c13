"""Claims scorecard: a verdict on each claim of methods.md §14 (and two central ones it leaves implicit), and on three
of them asked of convolutional nets, computed from the run tables with an interval that says how far the verdict can
be trusted (docs/methods.md §21, report/claims.md).

Each claim is one registry entry (``common.Claim``) in the module of its group, named after what the group tests:
its title, roles, quantity and criterion (the text report/claims.md states), and its check, scale rule and design
rule. The statistics every claim shares (bootstrap over seeds, decisions by interval, combining parts) are in
``stats``; how claims read the tables in ``common``; the scale labels and the paper's sizes in ``paper_scale``.

=======================  ================================================================================
module                   claims
=======================  ================================================================================
``paper_accuracy``       1: the 23 x 1024 net reaches 98.6 %
``depth_optimum``        2, 3: Fig. 4's optimum over depth and trend over width
``basins``               4, 6: basins against depth, and across grokking
``shallow_nets``         5, 12: Fig. 2's NNN against LNN, and G(t) rising, peaking, falling
``grokking``             7, 8, 10: when deep BN nets grok, and the most accurate net
``double_descent``       9: double descent at 32 layers
``standard_structure``   11: LP early, L-map late
``cnn``                  13-15 (beyond the paper): the standard structure, pruning positions, basin trends
=======================  ================================================================================

For each claim a quantity is measured per part, compared with a criterion fixed in advance and turned into a verdict:
``reproduced``, ``not reproduced`` or ``inconclusive``. A claim that fails to reproduce with a correct implementation
is a finding, not a bug. ``context`` gives what the tables do not, all keys optional: ``dataset`` (a name) or
``datasets`` (names), used when the runs table has no ``dataset`` column; ``sources`` (the data sources of those
datasets, e.g. ``["mnist"]``); and ``n_train`` (the full training-set size, for runs with ``train.n_train`` null;
otherwise ``KNOWN_TRAIN_SIZES`` of the dataset name or of the single source). ``evaluate(tables_by_role, context)``
returns one row per claim; ``design_check(runs_by_role, context)`` says, before anything runs, which claims a design
can settle. Light: pandas and numpy, no torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from netdyn.claims import (
    basins,
    cnn,
    depth_optimum,
    double_descent,
    grokking,
    paper_accuracy,
    shallow_nets,
    standard_structure,
)
from netdyn.claims.common import Claim, ok_runs, role_tables
from netdyn.claims.paper_scale import BEYOND_PAPER, PAPER, PAPER_SIZE, REDUCED
from netdyn.claims.stats import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, Estimate, bootstrap, decide
from netdyn.tables import RunTables

__all__ = [
    "BEYOND_PAPER",
    "BEYOND_PAPER_CLAIMS",
    "CLAIMS",
    "GROUPS",
    "INCONCLUSIVE",
    "NOT_REPRODUCED",
    "PAPER",
    "PAPER_CLAIMS",
    "PAPER_SIZE",
    "REDUCED",
    "REPRODUCED",
    "SCORECARD_COLUMNS",
    "Claim",
    "Estimate",
    "bootstrap",
    "decide",
    "design_check",
    "design_runs",
    "evaluate",
    "scale",
    "scored_role",
]

GROUPS = (
    paper_accuracy,
    depth_optimum,
    basins,
    shallow_nets,
    grokking,
    double_descent,
    standard_structure,
    cnn,
)
CLAIMS: dict[int, Claim] = dict(sorted((claim.number, claim) for group in GROUPS for claim in group.CLAIMS))
BEYOND_PAPER_CLAIMS = tuple(claim.number for claim in cnn.CLAIMS)  # the paper's questions asked of other networks
PAPER_CLAIMS = tuple(number for number in CLAIMS if number not in BEYOND_PAPER_CLAIMS)

# The roles of supplementary figures whose runs feed the scorecard (the beyond-paper rows); the paper's figures feed
# it every role. Figs. S1 and S2 test no claim.
SUPPLEMENTARY_ROLES = {("figS3", cnn.ROLE)}

SCORECARD_COLUMNS = [
    "claim",
    "title",
    "quantity",
    "criterion",
    "scale",
    "verdict",
    "estimate",
    "interval_low",
    "interval_high",
    "replicates",
    "decided_by",
    "value",
    "reason",
]


def scored_role(figure: str, role: str) -> bool:
    """Whether the runs playing ``role`` in ``figure`` feed the scorecard."""
    return not figure.startswith("figS") or (figure, role) in SUPPLEMENTARY_ROLES


def scale(claim: int, runs_by_role: Mapping[str, pd.DataFrame], context: Mapping[str, Any]) -> str:
    """The scale label of ``claim`` (``paper``, ``paper-size``, ``reduced`` or ``beyond paper``) from the runs of its
    first role."""
    entry = CLAIMS[claim]
    runs = runs_by_role.get(entry.roles[0])
    return entry.scale(pd.DataFrame() if runs is None else runs, context)


def design_check(runs_by_role: Mapping[str, pd.DataFrame], context: Mapping[str, Any]) -> dict[int, str | None]:
    """Before anything runs: for each claim, None when the runs (spec columns, as ``RunTables.runs``) can settle it
    by the scorecard's own requirements, else why not. Results can still leave a claim inconclusive (a run that
    does not grok, an interval that straddles the criterion)."""
    return {number: claim.design(runs_by_role, context) for number, claim in CLAIMS.items()}


def design_runs(config: Mapping[str, Any], runs: Mapping[str, Mapping[str, Any]]) -> dict[str, pd.DataFrame]:
    """``{role: runs table}`` of a config's runs as the scorecard will see them (spec columns, status completed), each
    run in the first role a figure gives it among the roles that feed the scorecard (as the workflow's claims rule
    does)."""
    from netdyn.config import figure_roles
    from netdyn.tables import flatten

    role_of: dict[str, str] = {}
    for figure in config.get("figures", {}):
        for role, experiments in figure_roles(config, figure).items():
            if not scored_role(figure, role):
                continue
            for run, spec in runs.items():
                if spec["experiment"] in experiments:
                    role_of.setdefault(run, role)
    rows: dict[str, list[dict]] = {}
    for run, role in role_of.items():
        spec = {key: runs[run][key] for key in ("dataset", "model", "train")}
        rows.setdefault(role, []).append({"run": run, "role": role, "status": "completed", **flatten(spec)})
    return {role: pd.DataFrame(found) for role, found in rows.items()}


def evaluate(tables_by_role: Mapping[str, RunTables], context: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """One row per claim: claim, title, quantity, criterion, scale, verdict, estimate, interval_low, interval_high,
    replicates, decided_by, value, reason."""
    context = dict(context or {})
    rows = []
    for number, claim in CLAIMS.items():
        outcome = claim.check(tables_by_role, context)
        runs = {}
        for role in claim.roles:
            tables = role_tables(tables_by_role, role)
            if tables is not None:
                runs[role] = ok_runs(tables)[0]
        rows.append(
            {
                "claim": number,
                "title": claim.title,
                "quantity": claim.quantity,
                "criterion": claim.criterion,
                "scale": scale(number, runs, context),
                "verdict": outcome.verdict,
                "estimate": outcome.estimate,
                "interval_low": outcome.low,
                "interval_high": outcome.high,
                "replicates": outcome.replicates,
                "decided_by": outcome.decided_by,
                "value": outcome.value,
                "reason": outcome.reason,
            }
        )
    return pd.DataFrame(rows, columns=SCORECARD_COLUMNS)
