"""Stage ``hessian``: the training loss's curvature at every analysed snapshot (docs/methods.md §23): the top
Hessian eigenvalues (Lanczos) and the trace (Hutchinson, Rademacher probes), on the training analysis samples,
BatchNorm in eval mode (``hessian_bn_mode: eval``, PyHessian's only mode) or normalising by the samples' own
statistics (``train``).

Tables: ``hessian`` (per step: the top-k eigenvalues, Lanczos iterations, last relative change and whether it met
``hessian_tol``; the trace, its standard error and the probes used) and the metrics ``hessian_max`` and
``hessian_trace``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from netdyn import data as datasets
from netdyn.hessian import hessian_operator, hutchinson_trace, model_loss, top_eigenvalues
from netdyn.metrics import metric_frame, metric_row
from netdyn.samples import analysis_samples
from netdyn.stages import Sources
from netdyn.stages.common import analysis_device, dtype_of, models

COLUMNS = ["run", "step", "bn_mode", "samples", "rank", "eigenvalue", "iterations", "change", "converged", "trace",
           "trace_stderr", "probes"]  # fmt: skip


def run(run: str, sources: Sources, steps: Sequence[int], settings: Mapping[str, Any], log=print) -> dict:
    data = datasets.load(sources.data, device=analysis_device(sources.train_spec))
    samples = settings["hessian_samples"] or settings["samples"]
    _, x, y = analysis_samples(data, sources.train_spec, samples)
    bn_train = settings["hessian_bn_mode"] == "train"
    # Batched probes lose on a CPU (benchmarks/RESULTS.md: 0.4x at 64 probes) and save launches on a GPU.
    block = settings["hessian_block"] or (20 if data.train_x.is_cuda else 1)
    table, rows = [], []
    for step, model in models(sources.snapshots, steps, data.train_x.device, log):
        operator = hessian_operator(
            model_loss(model, x.to(dtype_of(model)), y, sources.train_spec["loss"], bn_train), list(model.parameters())
        )
        top = top_eigenvalues(
            operator, k=settings["hessian_top_k"], max_iter=settings["hessian_iterations"], tol=settings["hessian_tol"]
        )
        trace = hutchinson_trace(
            operator,
            probes=settings["hessian_probes"],
            block=block,
            tol=settings["hessian_trace_tol"],
        )
        for rank, value in enumerate(top.values, start=1):
            table.append({"run": run, "step": step, "bn_mode": settings["hessian_bn_mode"], "samples": len(y),
                          "rank": rank, "eigenvalue": value, "iterations": top.iterations, "change": top.change,
                          "converged": top.converged, "trace": trace.trace, "trace_stderr": trace.stderr,
                          "probes": trace.probes})  # fmt: skip
        note = "" if top.converged else f"Lanczos not converged: change {top.change:.1e} after {top.iterations}"
        rows.append(metric_row(run, step, "hessian_max", top.values[0], note=note))
        rows.append(metric_row(run, step, "hessian_trace", trace.trace, note=f"stderr {trace.stderr:.3g}"))
        log(
            f"step {step}: top eigenvalue {top.values[0]:.4g} ({top.iterations} products), "
            f"trace {trace.trace:.4g} +- {trace.stderr:.2g} ({trace.probes} probes)"
        )
    return {"hessian": pd.DataFrame(table, columns=COLUMNS), "metrics": metric_frame(rows)}
