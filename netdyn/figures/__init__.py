"""Figures 2–9 of the paper (methods.md §13), one module per figure, all in one shared style.

Each ``figN.draw(tables)`` takes the ``netdyn.tables.RunTables`` of the runs that feed it (their
``runs.role`` column says which part each run plays) and returns ``(figure, plotted)``: the matplotlib
figure and a long DataFrame of exactly the numbers it plots. ``style.save`` writes PNG, PDF and CSV.
Helpers that more than one figure uses live in ``common``.
"""
