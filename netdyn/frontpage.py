"""The report's first page (rule ``front_page``): the workflow's introduction, then the claims scorecard as a table
(claim, verdict, scale, value, interval, reason) with links to the figures each claim bears on.

Snakemake renders the page from reStructuredText and defines a link target for every file in the report, so a cell
``fig3.png_`` opens Figure 3. Its landing page sets that text in a column 32rem wide beside the workflow graph and
centres both vertically: a scorecard there wraps into one-word lines, runs under the graph, and its top, taller
than the screen, cannot be scrolled to. The page therefore carries a style block (``LAYOUT``) that gives the text
the page's width, starts it at the top and puts the graph below it; a value or reason longer than ``REASON_CHARS``
is cut at a clause, the whole one in ``results/claims.csv``. Light: pandas only, no torch.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import pandas as pd

COLUMNS = ("claim", "verdict", "scale", "value", "interval", "reason", "figures")
RST_SPECIAL = re.compile(r"([\\`*_|<>\[\]])")
REASON_CHARS = 90
# Selectors of Snakemake 9's report (html_reporter/template/components/content.js): the landing page's scrolling
# area, its row of text and graph, and the text's column. The style lives in the page's text, so it applies only
# while the landing page shows.
LAYOUT = """\
.. raw:: html

   <style>
   div.grow.flex.h-screen.overflow-auto { align-items: flex-start; justify-content: flex-start; }
   div.grow.flex.gap-3.p-3.items-start { flex-direction: column; min-width: 0; }
   div.prose.max-w-lg { max-width: 72rem; }
   div.prose table { width: 100%; table-layout: auto; }
   div.prose td, div.prose th { padding: 0.3em 0.5em; vertical-align: top; }
   </style>
"""


def rst_text(value: object) -> str:
    """A table cell's text with reStructuredText's markup characters escaped, on one line; a leading escaped space
    (which RST drops) keeps text such as "(a) ..." or "- x" from starting a list."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = RST_SPECIAL.sub(r"\\\1", " ".join(str(value).split()))
    return f"\\ {text}" if text else ""


def interval(row: Mapping[str, object]) -> str:
    low, high = row.get("interval_low"), row.get("interval_high")
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in (low, high)):
        return ""
    return f"[{float(low):.3g}, {float(high):.3g}]"


def claim_figures(claim_roles: Mapping[int, Sequence[str]], figure_roles: Mapping[str, Sequence[str]]) -> dict:
    """claim -> the figures (of those drawn) that have one of the claim's roles, in figure order."""
    return {
        claim: [figure for figure, roles in figure_roles.items() if set(roles) & set(wanted)]
        for claim, wanted in claim_roles.items()
    }


def short_reason(reason: object, limit: int = REASON_CHARS) -> str:
    """``reason`` (or a value) cut to its first clauses within ``limit`` characters (the whole one is in
    claims.csv)."""
    if reason is None or (isinstance(reason, float) and math.isnan(reason)):
        return ""
    text = " ".join(str(reason).split())
    if len(text) <= limit:
        return text
    clauses = text.split("; ")
    kept = clauses[0]
    for clause in clauses[1:]:
        if len(kept) + 2 + len(clause) > limit:
            break
        kept += "; " + clause
    return (kept if len(kept) <= limit else kept[: limit - 1].rsplit(" ", 1)[0]).rstrip(";, ") + " …"


def front_page(intro: str, scorecard: pd.DataFrame, figures_of: Mapping[int, Sequence[str]]) -> str:
    """The first page's reStructuredText: the layout's style block, ``intro``, then one scorecard row per claim."""
    lines = [LAYOUT, intro.rstrip(), "", "Claims scorecard", "----------------", ""]
    verdicts = scorecard["verdict"].value_counts()
    lines.append(
        ", ".join(f"{count} {verdict}" for verdict, count in verdicts.items())
        + " (``results/claims.csv`` has each claim's quantity, criterion and whole reason)."
    )
    lines += ["", ".. list-table::", "   :header-rows: 1", "   :widths: 5 25 10 8 12 12 20 8", ""]
    header = ["claim", "title", "verdict", "scale", "value", "interval", "reason", "figures"]
    lines.append("   * - " + header[0])
    lines += [f"     - {name}" for name in header[1:]]
    for row in scorecard.to_dict("records"):
        figures = " ".join(f"{figure}.png_" for figure in figures_of.get(int(row["claim"]), []))
        reason = short_reason(row.get("reason"))
        cells = [str(row["claim"]), rst_text(row["title"]), f"**{rst_text(row['verdict'])}**", rst_text(row["scale"]),
                 rst_text(short_reason(row.get("value"))), interval(row), rst_text(reason), figures]  # fmt: skip
        lines.append(f"   * - {cells[0]}")
        lines += [f"     - {cell}" if cell else "     -" for cell in cells[1:]]
    return "\n".join(lines) + "\n"
