"""The layer convention every analysis shares: an MLP is a flat ``nn.Sequential``.

Accepted shape (methods.md §1.1–§1.4, docs/design.md "Layers and indices")::

    [Flatten] (Linear [BatchNorm1d] activation [Dropout]) * D  Linear

``l = 0`` is the input, ``l = 1..D`` the hidden layers, ``l = L = D + 1`` the logits. The local field
``h`` of a hidden layer is the argument of its activation (after BatchNorm); its output is ``x = f(h)``.
Anything else is rejected with an error naming the first unsupported module, so every analysis can
rely on this structure. Any other module reaches the analyses wrapped in ``netdyn.layerview.AnalysedNet``, whose
layer view (``netdyn/layerview.py``, methods.md §27) :func:`depth` and :func:`forward_layers` use instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "linear": nn.Identity,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
}
_ACTIVATION_TYPES = tuple(ACTIVATIONS.values())


class UnsupportedModelError(ValueError):
    """The model is not a chain of Linear / BatchNorm1d / activation / Dropout modules."""


@dataclass(frozen=True)
class Block:
    """One layer of the MLP: ``linear`` then optional ``bn``; hidden blocks also have ``act``."""

    linear: nn.Linear
    bn: nn.BatchNorm1d | None = None
    act: nn.Module | None = None
    dropout: nn.Dropout | None = None


def blocks(model: nn.Sequential) -> list[Block]:
    """Split ``model`` into its D hidden blocks followed by the output block (``act is None``)."""
    modules = list(model.children()) if isinstance(model, nn.Sequential) else None
    if modules is None:
        raise UnsupportedModelError(f"expected an nn.Sequential, got {type(model).__name__}")
    if modules and isinstance(modules[0], nn.Flatten):
        modules = modules[1:]
    result: list[Block] = []
    i = 0
    while i < len(modules):
        linear = modules[i]
        if not isinstance(linear, nn.Linear):
            raise _unsupported(linear, i, "expected nn.Linear")
        i += 1
        bn = act = dropout = None
        if i < len(modules) and isinstance(modules[i], nn.BatchNorm1d):
            bn, i = modules[i], i + 1
        if i < len(modules) and isinstance(modules[i], _ACTIVATION_TYPES):
            act, i = modules[i], i + 1
            if i < len(modules) and isinstance(modules[i], nn.Dropout):
                dropout, i = modules[i], i + 1
        elif i < len(modules):
            raise _unsupported(modules[i], i, "expected an activation after the Linear/BatchNorm1d")
        if act is None and i < len(modules):
            raise _unsupported(modules[i], i, "only the last Linear may lack an activation")
        result.append(Block(linear, bn, act, dropout))
    if not result or result[-1].act is not None:
        raise UnsupportedModelError("the model must end with an nn.Linear output layer (the logits)")
    return result


def _unsupported(module: nn.Module, index: int, why: str) -> UnsupportedModelError:
    return UnsupportedModelError(
        f"unsupported module {type(module).__name__} at position {index}: {why} "
        "(netdyn analyses need a chain of Linear, BatchNorm1d, activation, Dropout)"
    )


def is_general(model: nn.Module) -> bool:
    """Whether ``model`` is analysed through its layer view (any module) rather than as a flat MLP chain."""
    from netdyn.layerview import AnalysedNet

    return isinstance(model, AnalysedNet)


def depth(model: nn.Module) -> int:
    """Number of hidden (analysed) layers D."""
    if is_general(model):
        from netdyn.layerview import view

        return len(view(model).layers)
    return len(blocks(model)) - 1


def block_field(block: Block, x: torch.Tensor) -> torch.Tensor:
    """Local field of ``block`` for input ``x``: Linear, then BatchNorm in the module's current mode."""
    h = block.linear(x)
    return block.bn(h) if block.bn is not None else h


@torch.no_grad()
def forward_layers(
    model: nn.Sequential, x: torch.Tensor
) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """Eval-mode forward returning per hidden layer the fields ``hs[l-1]`` and outputs ``xs[l-1]``, and the logits.

    The caller sets the mode (``model.eval()`` for every analysis); Dropout is skipped here because it is
    the identity in eval mode and the analyses never use it. Any other module: its layer view's fields and pooled
    outputs (``netdyn.layerview.capture``).
    """
    if is_general(model):
        from netdyn.layerview import capture

        return capture(model, x)
    x = x.flatten(1)
    hs, xs = [], []
    *hidden, output = blocks(model)
    for block in hidden:
        h = block_field(block, x)
        x = block.act(h)
        hs.append(h)
        xs.append(x)
    return hs, xs, block_field(output, x)


def folded_affine(block: Block) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W, b)`` of the block's Linear with eval-mode BatchNorm folded in (methods.md §5.2), PyTorch orientation."""
    weight = block.linear.weight.detach()
    bias = block.linear.bias.detach() if block.linear.bias is not None else torch.zeros_like(weight[:, 0])
    bn = block.bn
    if bn is None:
        return weight, bias
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.affine:
        scale = scale * bn.weight.detach()
    shift = (bias - bn.running_mean) * scale
    if bn.affine:
        shift = shift + bn.bias.detach()
    return scale[:, None] * weight, shift
