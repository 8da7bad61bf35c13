"""Build the MLPs of the paper as plain ``nn.Sequential`` models (methods.md §1).

Each hidden layer is ``Linear -> [BatchNorm1d] -> activation -> [Dropout]``; the output layer is a bare
``Linear``. Initialization is PyTorch's default (``kaiming_uniform_(a=sqrt(5))``, methods.md §1.5), or a
fixed range ``U(-a, a)`` for every weight (biases keep the default), then every parameter is multiplied by
``alpha`` (the Omnigrok grokking set-up, methods.md §12).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from netdyn.config import MODEL_DEFAULTS
from netdyn.layers import ACTIVATIONS


def hidden_widths(spec: Mapping[str, Any]) -> list[int]:
    """The hidden widths: ``widths`` when given, else ``depth`` copies of ``width``."""
    widths = spec.get("widths")
    if widths is not None:
        return [int(w) for w in widths]
    return [int(spec["width"])] * int(spec["depth"])


def build(spec: Mapping[str, Any], generator_seed: int | None = None) -> nn.Sequential:
    """Return the MLP described by ``spec`` (keys of ``MODEL_DEFAULTS``; missing keys take the defaults).

    ``generator_seed``, when given, seeds the global torch RNG first so the initial weights are reproducible.
    """
    unknown = set(spec) - set(MODEL_DEFAULTS)
    if unknown:
        raise ValueError(f"model spec: unknown key(s) {sorted(unknown)}; known: {sorted(MODEL_DEFAULTS)}")
    spec = {**MODEL_DEFAULTS, **spec}
    if spec["activation"] not in ACTIVATIONS:
        raise ValueError(f"model.activation: unknown {spec['activation']!r}; choose from {sorted(ACTIVATIONS)}")
    if spec["init"] not in ("default", "uniform"):
        raise ValueError(f"model.init: unknown {spec['init']!r}; choose 'default' or 'uniform'")
    if generator_seed is not None:
        torch.manual_seed(generator_seed)

    layers: list[nn.Module] = []
    fan_in = int(spec["input_size"])
    for width in hidden_widths(spec):
        layers.append(nn.Linear(fan_in, width))
        if spec["batchnorm"]:
            layers.append(nn.BatchNorm1d(width))
        layers.append(ACTIVATIONS[spec["activation"]]())
        if spec["dropout"] > 0:
            layers.append(nn.Dropout(float(spec["dropout"])))
        fan_in = width
    layers.append(nn.Linear(fan_in, int(spec["classes"])))
    model = nn.Sequential(*layers)

    with torch.no_grad():
        if spec["init"] == "uniform":
            a = float(spec["init_range"])
            for module in model:
                if isinstance(module, nn.Linear):
                    module.weight.uniform_(-a, a)
        if spec["alpha"] != 1.0:
            for parameter in model.parameters():
                parameter.mul_(float(spec["alpha"]))
    return model
