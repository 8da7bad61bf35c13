"""netdyn: network-dynamics analyses of MLP training (arXiv 2501.02436) as a library and a Snakemake workflow.

``netdyn.analyze(model, data)`` runs the workflow's analyses on your own models (docs/external.md);
``netdyn.load_snapshot(path)`` reads a snapshot the workflow wrote; ``netdyn.detect_events(history)`` finds
grokking, BatchNorm grokking and double descent in any logged training history.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # Imported lazily: the Snakefile imports netdyn.config, which must not pay for torch at parse time.
    if name == "analyze":
        from netdyn.api import analyze

        return analyze
    if name == "detect_events":
        from netdyn.events import detect_events

        return detect_events
    if name == "load_snapshot":
        from netdyn.snapshots import load_snapshot

        return load_snapshot
    raise AttributeError(f"module 'netdyn' has no attribute {name!r}")
