"""A user's own network (any ``nn.Module``) as netdyn reads it: from a builder function or a pickled module, wrapped
for the layer view (docs/external.md "Any network", methods.md §27).

A model description (the ``model`` of a snapshot's spec and of ``run.json``) for such a network::

    {"module": {"builder": "/abs/path/mymodel.py:build"}      # build() returns the module; weights from the snapshot
              | {"file": "/abs/path/step000100.pt"},          # a pickled whole module: its structure
     "input_shape": [1, 28, 28], "input_size": 784, "classes": 10,
     "layers": null | ["features.2", ...], "conv_field": "mean"}

The snapshot's ``state_dict`` is the module's own (its keys as the user's checkpoints have them).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netdyn.layerview import AnalysedNet


class UserModelError(ValueError):
    """A builder reference or a pickled module cannot give a model; the message names the file."""


def load_builder(reference: str) -> Callable[[], nn.Module]:
    """The function ``reference`` names, imported from its file; ``reference`` is ``/abs/file.py:function`` as
    ``netdyn.config.builder_reference`` writes it into a run's spec."""
    path, _, function = str(reference).rpartition(":")
    if not os.path.isfile(path):
        raise UserModelError(f"{path}: model file is missing")
    name = "netdyn_user_model_" + hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:12]
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(Path(path).resolve().parent))  # the builder may import its neighbours
        try:
            spec.loader.exec_module(module)
        except Exception as error:
            raise UserModelError(f"{path}: importing it failed ({type(error).__name__}: {error})") from None
        finally:
            sys.path.pop(0)
        sys.modules[name] = module
    builder = getattr(module, function, None)
    if not callable(builder):
        raise UserModelError(f"{path}: has no function {function!r}")
    return builder


def build_module(reference: str) -> nn.Module:
    """The module ``reference``'s builder returns (checked to be an ``nn.Module``)."""
    model = load_builder(reference)()
    if not isinstance(model, nn.Module):
        raise UserModelError(f"{reference}: returned a {type(model).__name__}, not an nn.Module")
    return model


def wrap(net: nn.Module, description: Mapping[str, Any]) -> AnalysedNet:
    """``net`` wrapped for the layer view as ``description`` says (input shape, layers, conv field)."""
    return AnalysedNet(
        net, description.get("input_shape"), description.get("layers"), description.get("conv_field", "mean")
    )


def from_description(description: Mapping[str, Any]) -> AnalysedNet:
    """A fresh module of a user model description (weights as built or as pickled; a snapshot loads its own)."""
    source = description["module"]
    if "builder" in source:
        net = build_module(source["builder"])
    else:
        try:
            net = torch.load(source["file"], map_location="cpu", weights_only=False)
        except Exception as error:
            raise UserModelError(f"{source['file']}: cannot load the pickled module ({error})") from None
        if isinstance(net, Mapping) or not isinstance(net, nn.Module):
            raise UserModelError(f"{source['file']}: holds no pickled nn.Module")
    return wrap(net, description)
