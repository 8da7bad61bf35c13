"""The report's first page (netdyn.frontpage): the scorecard renders as an HTML table of one row per claim, its
cells escaped, each claim linked to the figures that share one of its roles."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from docutils.core import publish_parts

from netdyn.frontpage import REASON_CHARS, claim_figures, front_page, rst_text, short_reason


def scorecard() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "claim": [1, 2, 3],
            "title": ["23x1024 reaches 98.6%", "best depth *6-8*", "G_1 `smallest` | near 6"],
            "verdict": ["reproduced", "inconclusive", "not reproduced"],
            "scale": ["paper", "reduced", "reduced"],
            "value": ["0.991", np.nan, "rho = -0.8"],
            "interval_low": [0.985, np.nan, -0.9],
            "interval_high": [0.995, np.nan, -0.6],
            "reason": ["", "< 2 seeds", "(a) interval below the criterion_; (b) none"],
        }
    )


def test_the_scorecard_renders_as_a_table_with_a_row_per_claim_and_figure_links():
    figures = claim_figures({1: ("depth",), 2: ("sweep",), 3: ("shallow",)},
                            {"fig3": ["depth"], "fig4": ["sweep"], "fig9": ["depth"]})  # fmt: skip
    assert figures == {1: ["fig3", "fig9"], 2: ["fig4"], 3: []}
    text = front_page("Introduction.", scorecard(), figures)
    links = ".. _fig3.png: #a\n.. _fig4.png: #b\n.. _fig9.png: #c\n"  # Snakemake defines one per report file
    html = publish_parts(text + links, writer_name="html")["html_body"]
    rows = re.findall(r"<tr", html)
    assert len(rows) == 1 + 3  # the header and one row per claim
    assert "1 reproduced, 1 inconclusive, 1 not reproduced" in html
    assert "best depth *6-8*" in html and "G_1 `smallest` | near 6" in html  # escaped, not markup
    assert html.count('href="#a"') == 1 and html.count('href="#c"') == 1 and html.count('href="#b"') == 1
    assert "[0.985, 0.995]" in html and "System Message" not in html
    assert "<ol" not in html and "(a) interval below the criterion_; (b) none" in html  # text, not a list


def test_cells_are_one_line_and_missing_values_are_empty():
    assert rst_text(float("nan")) == "" and rst_text(None) == ""
    assert rst_text("a\nb  c") == "\\ a b c" and rst_text("x_") == "\\ x\\_"


def test_a_long_value_or_reason_is_cut_at_a_clause_and_the_page_carries_its_layout():
    long = "(a) inconclusive: rho 0.74 [-0.32, 1] (n=3) >= 0.5?; (b) inconclusive: rho -0.8 (n=1): < 2 seeds per point"
    assert short_reason(long) == "(a) inconclusive: rho 0.74 [-0.32, 1] (n=3) >= 0.5? …"
    assert short_reason("short; reason") == "short; reason" and short_reason(float("nan")) == ""
    words = short_reason("word " * 60)
    assert len(words) <= REASON_CHARS + 2 and words.endswith("word …")
    table = scorecard().assign(reason=[long, "", ""])
    html = publish_parts(front_page("Introduction.", table, {}), writer_name="html")["html_body"]
    assert "(b) inconclusive" not in html and "has each claim's quantity, criterion and whole reason" in html
    assert "<style>" in html and "div.prose.max-w-lg" in html  # the landing page's layout (tests/test_workflow.py)
