"""Build the MLPs of the paper as plain ``nn.Sequential`` models (methods.md §1), and convolutional nets
(``model.arch: cnn``, docs/config.md) analysed through their layer view (netdyn/layerview.py, methods.md §27).

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

from netdyn.config import CNN_DEFAULTS, MODEL_DEFAULTS, conv_plan
from netdyn.layers import ACTIVATIONS
from netdyn.layerview import AnalysedNet


def hidden_widths(spec: Mapping[str, Any]) -> list[int]:
    """The hidden widths: ``widths`` when given, else ``depth`` copies of ``width``."""
    widths = spec.get("widths")
    if widths is not None:
        return [int(w) for w in widths]
    return [int(spec["width"])] * int(spec["depth"])


def build(spec: Mapping[str, Any], generator_seed: int | None = None) -> nn.Module:
    """Return the MLP described by ``spec`` (keys of ``MODEL_DEFAULTS``; missing keys take the defaults), or the
    convolutional net of a ``arch: cnn`` spec (:func:`build_cnn`).

    ``generator_seed``, when given, seeds the global torch RNG first so the initial weights are reproducible.
    """
    if spec.get("arch") == "cnn":
        return build_cnn(spec, generator_seed)
    spec = {key: value for key, value in spec.items() if key != "arch" or value != "mlp"}
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

    model = nn.Sequential(*linear_layers(int(spec["input_size"]), hidden_widths(spec), spec))
    if spec["init"] == "uniform":
        with torch.no_grad():
            a = float(spec["init_range"])
            for module in model:
                if isinstance(module, nn.Linear):
                    module.weight.uniform_(-a, a)
    return scaled(model, spec["alpha"])


def linear_layers(fan_in: int, widths: list[int], spec: Mapping[str, Any]) -> list[nn.Module]:
    """``Linear -> [BatchNorm1d] -> activation -> [Dropout]`` for every hidden width, then the output ``Linear``: an
    MLP, or a CNN's head."""
    layers: list[nn.Module] = []
    for width in widths:
        layers.append(nn.Linear(fan_in, int(width)))
        if spec["batchnorm"]:
            layers.append(nn.BatchNorm1d(int(width)))
        layers.append(ACTIVATIONS[spec["activation"]]())
        if spec["dropout"] > 0:
            layers.append(nn.Dropout(float(spec["dropout"])))
        fan_in = int(width)
    layers.append(nn.Linear(fan_in, int(spec["classes"])))
    return layers


def scaled(model: nn.Module, alpha: float) -> nn.Module:
    """``model`` with every parameter multiplied by ``alpha`` (the Omnigrok set-up, methods.md §12)."""
    if alpha != 1.0:
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.mul_(float(alpha))
    return model


def build_cnn(spec: Mapping[str, Any], generator_seed: int | None = None) -> AnalysedNet:
    """The convolutional net of ``spec`` (keys of ``CNN_DEFAULTS``): conv layers ``Conv2d(kernel, same padding) ->
    [BatchNorm2d] -> activation [-> MaxPool2d(2)]``, then ``Flatten``, the head's ``Linear -> [BatchNorm1d] ->
    activation -> [Dropout]`` layers and the output ``Linear``; PyTorch's default initialisation, every parameter
    times ``alpha``. Wrapped for the layer view with the data's sample shape."""
    unknown = set(spec) - set(CNN_DEFAULTS)
    if unknown:
        raise ValueError(f"model spec: unknown key(s) {sorted(unknown)} for arch cnn; known: {sorted(CNN_DEFAULTS)}")
    spec = {**CNN_DEFAULTS, **spec}
    if spec["activation"] not in ACTIVATIONS:
        raise ValueError(f"model.activation: unknown {spec['activation']!r}; choose from {sorted(ACTIVATIONS)}")
    if int(spec["kernel"]) % 2 == 0:
        raise ValueError(f"model.kernel: {spec['kernel']} is even; 'same' padding needs an odd kernel")
    if generator_seed is not None:
        torch.manual_seed(generator_seed)
    activation = ACTIVATIONS[spec["activation"]]
    layers: list[nn.Module] = []
    in_channels = int(spec["input_shape"][0])
    for width, _, pooled in conv_plan(spec):
        layers.append(nn.Conv2d(in_channels, width, int(spec["kernel"]), padding=int(spec["kernel"]) // 2))
        if spec["batchnorm"]:
            layers.append(nn.BatchNorm2d(width))
        layers.append(activation())
        if pooled:
            layers.append(nn.MaxPool2d(2))
        in_channels = width
    layers.append(nn.Flatten())
    width, side, _ = conv_plan(spec)[-1]
    layers += linear_layers(width * side * side, list(spec["head_widths"]), spec)
    model = scaled(nn.Sequential(*layers), spec["alpha"])
    return AnalysedNet(model, spec["input_shape"])
