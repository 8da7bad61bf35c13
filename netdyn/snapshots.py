"""Snapshot files: one ``step{S:06d}.pt`` per scheduled training step (docs/formats.md).

A snapshot holds the state dict, the run's resolved spec, the optimizer and RNG states and the step, so
training can resume from it bit for bit. A run that diverged before a scheduled step gets an explicit
divergence marker at that step instead of weights: analyses report it as diverged, nothing is fabricated.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netdyn.atomic import atomic_path
from netdyn.models import build

FORMAT = "netdyn-snapshot"
SCHEMA_VERSION = 1


class SnapshotError(ValueError):
    """A snapshot file is missing, truncated, foreign or of another schema version."""


class DivergedSnapshotError(SnapshotError):
    """The snapshot is a divergence marker: the run never reached this step."""


def snapshot_name(step: int) -> str:
    return f"step{step:06d}.pt"


def save(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Atomically write a snapshot (``payload`` gets the format tag and schema version added)."""
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "schema_version": SCHEMA_VERSION, **payload}, tmp)


def save_divergence_marker(path: str | os.PathLike, step: int, diverged_at: int, spec: dict) -> None:
    save(path, {"step": step, "diverged": True, "diverged_at": diverged_at, "spec": spec})


def read(path: str | os.PathLike) -> dict[str, Any]:
    """The raw snapshot dictionary, validated; raises SnapshotError naming the file on any fault."""
    path = Path(path)
    if not path.exists():
        raise SnapshotError(f"{path}: snapshot file is missing")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises many types for truncated or foreign files
        raise SnapshotError(f"{path}: not a readable snapshot ({type(error).__name__}: {error})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise SnapshotError(f"{path}: not a netdyn snapshot (no '{FORMAT}' format tag)")
    if payload.get("schema_version") != SCHEMA_VERSION:
        raise SnapshotError(
            f"{path}: snapshot schema version {payload.get('schema_version')} (this netdyn reads {SCHEMA_VERSION})"
        )
    return payload


def is_diverged(path: str | os.PathLike) -> bool:
    return bool(read(path).get("diverged", False))


def load_snapshot(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """Return ``(model, meta)``: the model on the CPU in eval mode (a netdyn MLP, or a user's network wrapped for its
    layer view), and everything else in the file.

    Raises DivergedSnapshotError for a divergence marker.
    """
    payload = read(path)
    if payload.get("diverged"):
        raise DivergedSnapshotError(f"{path}: run diverged at step {payload['diverged_at']}; no weights here")
    spec = payload["spec"]
    if "module" in spec["model"]:  # a user's own network (netdyn.usermodels)
        from netdyn.usermodels import UserModelError, from_description

        try:
            model = from_description(spec["model"])
        except UserModelError as error:
            raise SnapshotError(f"{path}: {error}") from None
    else:
        model = build(spec["model"])
    dtype = getattr(torch, spec["train"]["dtype"])
    model.to(dtype)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as error:
        raise SnapshotError(f"{path}: weights do not match the stored model spec ({error})") from None
    model.eval()
    meta = {key: value for key, value in payload.items() if key != "state_dict"}
    return model, meta


def iter_models(snapshot_dir: str | os.PathLike, steps, device: str | torch.device = "cpu", log=print):
    """``(step, model)`` for every given step whose snapshot holds weights; divergence markers are skipped."""
    for step in steps:
        path = Path(snapshot_dir) / snapshot_name(step)
        if is_diverged(path):
            log(f"step {step}: the run had diverged; skipped")
            continue
        model, _ = load_snapshot(path)
        yield step, model.to(device)
