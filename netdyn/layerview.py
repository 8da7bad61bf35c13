"""The layer view of any PyTorch module: its analysed layers, their fields, and its linearised tail (methods.md §27).

An *analysed layer* is a call of an activation module whose input is the output of a ``Linear`` or ``Conv`` layer,
directly or through an eval-mode ``BatchNorm``: its input is the local field ``h``, its output ``x = f(h)``. Layers
are found in execution order by forward hooks on one example batch (:func:`find_layers`), or named by the user
(module paths as ``named_modules()`` gives them; the k-th further call of a module reused in one forward pass, as
ResNet's ``relu``, is ``name#k``). Calls that are not analysed layers (an activation after a residual sum, after a
LayerNorm) are listed with the reason.

**Units of a convolutional layer are its channels.** A channel's per-sample field is a reduction over positions,
``conv_field``: ``mean`` (default, the spatial mean of the pre-activation), ``max`` or ``center``; its output ``x``
is the spatial mean of ``f(h)`` (the *pooled* features every analysis of outputs reads). Fields are reduced as the
hooks see them, so memory is channels × samples, never channels × positions × samples.

**The linearised tail** (the L-map of methods.md §5 for any module): the network run in eval mode with every
activation module called from a chosen point on replaced by the identity and every max pooling by the average pooling
of the same window (the linear map that pools the same positions; ``count_include_pad=False``, as max pooling ignores
its padding). :func:`readouts` gives the RPD's ``A^{(m)}`` (methods.md §6.1), in float64: the linearised network's
derivative of each logit with respect to layer m's field, summed over positions for a channel; for a Linear layer (one
position) it is the MLP's L-map ``M(m+1)ᵀ``. It is measured by autograd at two points and refused
(:class:`NotAffineError`) where they differ, i.e. where a nonlinearity the hooks cannot see (a functional ``F.relu``,
a LayerNorm) remains. :func:`linearised_logits` is L-map pruning from start layer l: layers before l run as trained,
everything from layer l's Linear/Conv on is linearised (in the model's dtype).

A flat MLP (``netdyn.layers``) is one case: its layers, fields and L-maps are the same numbers either way, to float
tolerance (tests/test_layerview.py).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from netdyn.evaluate import eval_mode

ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Tanh,
    nn.Sigmoid,
    nn.Softplus,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Identity,  # netdyn's "linear" activation
)
PRODUCER_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORM_TYPES: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
MAX_POOLS = {
    nn.MaxPool1d: F.avg_pool1d,
    nn.MaxPool2d: F.avg_pool2d,
    nn.MaxPool3d: F.avg_pool3d,
}
ADAPTIVE_MAX_POOLS = {
    nn.AdaptiveMaxPool1d: F.adaptive_avg_pool1d,
    nn.AdaptiveMaxPool2d: F.adaptive_avg_pool2d,
    nn.AdaptiveMaxPool3d: F.adaptive_avg_pool3d,
}
CONV_FIELDS = ("mean", "max", "center")
LP_FEATURES = ("pooled", "flattened")
# Most features of one flattened conv output: the LP's float64 Gram matrix is then at most 8192² · 8 B = 512 MiB.
MAX_FLAT_FEATURES = 8192
CAPTURE_ROWS = 1024


class NotAffineError(ValueError):
    """The linearised tail of a network is not affine: a nonlinearity is not an activation or pooling module."""


class LayerViewError(ValueError):
    """A module has no analysable layer, or a named layer does not exist; the message says which."""


class AnalysedNet(nn.Module):
    """A user's module with what its analyses need to know: the shape one sample has (the data are stored flat),
    the layers to analyse (None: every analysable layer) and how a conv field is reduced (``conv_field``).

    ``forward`` reshapes flat rows to ``input_shape`` and calls the module; its state dict is the module's own."""

    def __init__(
        self,
        net: nn.Module,
        input_shape: Sequence[int] | None = None,
        layer_names: Sequence[str] | None = None,
        conv_field: str = "mean",
    ) -> None:
        super().__init__()
        if conv_field not in CONV_FIELDS:
            raise ValueError(f"analysis.conv_field: {conv_field!r} is not one of {list(CONV_FIELDS)}")
        self.net = net
        self.input_shape = tuple(int(s) for s in input_shape) if input_shape else None
        self.layer_names = list(layer_names) if layer_names else None
        self.conv_field = conv_field
        self._view: LayerView | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_shape is not None:
            x = x.reshape(len(x), *self.input_shape)
        return self.net(x)

    def state_dict(self, *args, **kwargs):  # the user's module's keys, as its checkpoints have them
        return self.net.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.net.load_state_dict(state_dict, strict=strict, assign=assign)


@dataclass(frozen=True)
class Layer:
    """One analysed layer: the activation module's path (``#k`` for its k-th further call), its Linear/Conv and
    BatchNorm, and which call of the activation module it is."""

    name: str
    activation: nn.Module
    call: int
    producer: nn.Module
    producer_call: int
    norm: nn.Module | None
    kind: str  # "linear" or "conv"
    units: int


@dataclass(frozen=True)
class LayerView:
    layers: tuple[Layer, ...]
    skipped: tuple[tuple[str, str], ...]  # (call name, why it is not analysed)


def _call_name(name: str, call: int) -> str:
    return name if call == 0 else f"{name}#{call}"


def _leaves(net: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    seen = set()
    for name, module in net.named_modules():
        if id(module) in seen or (next(module.children(), None) is not None):
            continue
        seen.add(id(module))
        yield name, module


@contextmanager
def _hooks(net: nn.Module, pre: Callable | None, post: Callable | None) -> Iterator[Callable[[], None]]:
    """Call ``pre(name, module, call, args)`` and ``post(name, module, call, args, output)`` around every call of
    every leaf module, ``call`` counting that module's calls in the current forward pass from 0; a non-None return
    replaces the input / output, as torch's hooks do. Yields the function that starts a new pass (resets the
    counts); the user's modules keep no trace of the hooks afterwards."""
    handles, counts, current = [], {}, {}

    def make(name: str):
        def on_pre(module, args):
            call = counts.get(id(module), 0)
            counts[id(module)] = call + 1
            current[id(module)] = call
            return pre(name, module, call, args) if pre is not None else None

        def on_post(module, args, output):
            return post(name, module, current[id(module)], args, output) if post is not None else None

        return on_pre, on_post

    for name, module in _leaves(net):
        on_pre, on_post = make(name)
        handles.append(module.register_forward_pre_hook(on_pre))
        handles.append(module.register_forward_hook(on_post))
    try:
        yield counts.clear
    finally:
        for handle in handles:
            handle.remove()


def inner(model: nn.Module) -> nn.Module:
    return model.net if isinstance(model, AnalysedNet) else model


@dataclass
class _Call:
    name: str
    module: nn.Module
    call: int
    input: Any = None  # the input object and a copy of its values at call time
    input_value: Any = None
    output: Any = None  # producers and norms: the output object and a copy of its values
    output_value: Any = None


@torch.no_grad()
def find_layers(model: nn.Module, example: torch.Tensor) -> LayerView:
    """The analysed layers of ``model`` in execution order, found on ``example`` (a few input rows), restricted to
    ``model.layer_names`` where an :class:`AnalysedNet` names them; raises LayerViewError when none is left."""
    net = inner(model)
    calls: list[_Call] = []
    pending: dict[int, _Call] = {}

    def pre(name, module, call, args):
        if isinstance(module, ACTIVATION_TYPES + PRODUCER_TYPES + NORM_TYPES):
            given = args[0] if args else None
            record = _Call(name, module, call, given, given.clone() if torch.is_tensor(given) else None)
            calls.append(record)
            pending[id(module)] = record

    def post(name, module, call, args, output):
        record = pending.pop(id(module), None)
        if record is not None and torch.is_tensor(output):
            record.output, record.output_value = output, output.clone()

    with eval_mode(net), _hooks(net, pre, post):
        model(example)
    outputs = {}  # id(output object) -> its producer or norm call, the latest one
    layers, skipped = [], []
    for record in calls:
        if not isinstance(record.module, ACTIVATION_TYPES):
            if record.output is not None:
                outputs[id(record.output)] = record
            continue
        found = _layer_of(record, outputs)
        if isinstance(found, str):
            skipped.append((_call_name(record.name, record.call), found))
            continue
        producer, norm = found
        module = producer.module
        units = module.out_features if isinstance(module, nn.Linear) else module.out_channels
        layers.append(
            Layer(
                name=_call_name(record.name, record.call),
                activation=record.module,
                call=record.call,
                producer=module,
                producer_call=producer.call,
                norm=norm.module if norm is not None else None,
                kind="linear" if record.input_value.dim() == 2 else "conv",
                units=int(units),
            )
        )
    wanted = getattr(model, "layer_names", None)
    if wanted:
        by_name = {layer.name: layer for layer in layers}
        reasons = dict(skipped)
        for name in wanted:
            if name not in by_name:
                why = reasons.get(name, "no activation module of that name runs in the forward pass")
                found_names = ", ".join(by_name) or "none"
                raise LayerViewError(f"analysis.layers: {name!r} cannot be analysed ({why}); analysable: {found_names}")
        layers = [by_name[name] for name in wanted]
    if not layers:
        reasons = "; ".join(f"{n}: {w}" for n, w in skipped[:4]) or "it calls no activation module"
        raise LayerViewError(
            "no analysable layer: netdyn needs activation modules (nn.ReLU, nn.Tanh, ...) fed by a Linear or Conv "
            f"layer, optionally through BatchNorm ({reasons})"
        )
    return LayerView(tuple(layers), tuple(skipped))


def _layer_of(record: _Call, outputs: dict[int, _Call]) -> tuple[_Call, _Call | None] | str:
    """``(producer call, norm call or None)`` of an activation call, or why it is not an analysed layer.

    The activation's input must be the very tensor a producer or norm returned, with the values it returned (an
    in-place residual sum keeps the object but changes the values)."""
    if not torch.is_tensor(record.input):
        return "its input is not a tensor"
    source = outputs.get(id(record.input))
    if source is None or not torch.equal(source.output_value, record.input_value):
        return "its input is not the output of a Linear or Conv layer (through an optional BatchNorm)"
    if isinstance(source.module, PRODUCER_TYPES):
        return source, None
    producer = outputs.get(id(source.input))
    if producer is None or not isinstance(producer.module, PRODUCER_TYPES):
        return "its BatchNorm is not fed by a Linear or Conv layer"
    if not torch.equal(producer.output_value, source.input_value):
        return "its BatchNorm's input is not the Linear/Conv output unchanged"
    return producer, source


def view(model: nn.Module) -> LayerView:
    """The model's layer view, found once per :class:`AnalysedNet` (on one zero sample) and kept."""
    cached = getattr(model, "_view", None)
    if cached is not None:
        return cached
    found = find_layers(model, example_input(model))
    if isinstance(model, AnalysedNet):
        model._view = found
    return found


def example_input(model: nn.Module, rows: int = 2) -> torch.Tensor:
    """Rows of standard normal input of the model's input size (a fixed seed: the view must not depend on RNG)."""
    parameter = next(inner(model).parameters())
    shape = getattr(model, "input_shape", None)
    if shape is None:
        first = next(m for _, m in _leaves(inner(model)) if isinstance(m, PRODUCER_TYPES))
        if not isinstance(first, nn.Linear):
            raise LayerViewError("a convolutional model needs its input shape (the data's sample shape)")
        shape = (first.in_features,)
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(rows, int(torch.tensor(shape).prod()), generator=generator, dtype=parameter.dtype)
    return values.to(parameter.device)


def reduce_field(values: torch.Tensor, how: str) -> torch.Tensor:
    """``[P, N]`` per-unit values of a layer: unchanged for a Linear layer, reduced over positions for a conv."""
    if values.dim() == 2:
        return values
    if how == "mean":
        return values.flatten(2).mean(2)
    if how == "max":
        return values.flatten(2).amax(2)
    if how == "center":
        return values[(slice(None), slice(None), *(size // 2 for size in values.shape[2:]))]
    raise ValueError(f"analysis.conv_field: {how!r} is not one of {list(CONV_FIELDS)}")


@torch.no_grad()
def capture(
    model: nn.Module, x: torch.Tensor, chunk_size: int = CAPTURE_ROWS, outputs: str = "pooled"
) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """Eval-mode fields ``hs`` and outputs ``xs`` ``[P, N_l]`` of every analysed layer and the logits, as
    ``netdyn.layers.forward_layers`` returns them for an MLP: conv fields reduced by ``model.conv_field``,
    conv outputs by their spatial mean, or with ``outputs="flattened"`` whole (channels × positions per sample;
    a layer with more than :data:`MAX_FLAT_FEATURES` of them gets ``[P, 0]``: too many for anything to use)."""
    if outputs not in LP_FEATURES:
        raise ValueError(f"analysis.lp_features: {outputs!r} is not one of {list(LP_FEATURES)}")
    layers = view(model).layers
    slot = {(id(layer.activation), layer.call): index for index, layer in enumerate(layers)}
    how = getattr(model, "conv_field", "mean")
    net = inner(model)
    hs: list[list[torch.Tensor]] = [[] for _ in layers]
    xs: list[list[torch.Tensor]] = [[] for _ in layers]
    logits = []

    def pre(name, module, call, args):
        index = slot.get((id(module), call))
        if index is not None:
            hs[index].append(reduce_field(args[0], how))

    def post(name, module, call, args, output):
        index = slot.get((id(module), call))
        if index is None:
            return
        if outputs == "pooled" or output.dim() == 2:
            xs[index].append(reduce_field(output, "mean"))
        else:
            flat = output.flatten(1)
            xs[index].append(flat if flat.shape[1] <= MAX_FLAT_FEATURES else flat[:, :0])

    with eval_mode(net), _hooks(net, pre, post) as new_pass:
        for start in range(0, len(x), chunk_size):
            new_pass()
            logits.append(model(x[start : start + chunk_size]))
    return [torch.cat(h) for h in hs], [torch.cat(o) for o in xs], torch.cat(logits)


def _linearising_hooks(layers: Sequence[Layer], start: int, substitute=None, weights_only: bool = False):
    """``(pre, post)`` hooks that linearise everything from analysed layer ``start`` (1-based) on: from that layer's
    Linear/Conv call (or, for ``start = len(layers) + 1``, after the last layer's activation). ``substitute``
    replaces the field of layer ``start``'s activation (its output is then ``substitute(field)``)."""
    state = {"linear": False, "saved": {}}
    if start <= len(layers):
        trigger = ("pre", id(layers[start - 1].producer), layers[start - 1].producer_call)
        if substitute is not None:
            trigger = ("pre", id(layers[start - 1].activation), layers[start - 1].call)
    else:
        trigger = ("post", id(layers[-1].activation), layers[-1].call)
    target = (id(layers[start - 1].activation), layers[start - 1].call) if start <= len(layers) else None

    def pre(name, module, call, args):
        if ("pre", id(module), call) == trigger:
            state["linear"] = True
        if state["linear"] and isinstance(module, ACTIVATION_TYPES):
            state["saved"][id(module)] = args[0]
            return (args[0].clone(),)  # an in-place activation must not overwrite the field it passes on
        return None

    def post(name, module, call, args, output):
        linear = state["linear"]
        if ("post", id(module), call) == trigger:
            state["linear"] = True
        if not linear:
            return None
        if isinstance(module, ACTIVATION_TYPES):
            field = state["saved"].pop(id(module))
            if substitute is not None and (id(module), call) == target:
                return substitute(field)
            return field
        if type(module) in MAX_POOLS:
            if _tuple(module.dilation) != (1,) * len(_tuple(module.dilation)):
                raise NotAffineError(f"{name}: a dilated max pooling has no average-pooling stand-in")
            return MAX_POOLS[type(module)](
                args[0], module.kernel_size, module.stride, module.padding, module.ceil_mode, count_include_pad=False
            )
        if type(module) in ADAPTIVE_MAX_POOLS:
            return ADAPTIVE_MAX_POOLS[type(module)](args[0], module.output_size)
        if weights_only and isinstance(module, NORM_TYPES):
            return args[0]
        if weights_only and isinstance(module, PRODUCER_TYPES) and module.bias is not None:
            return output - module.bias.view(-1, *([1] * (output.dim() - 2)))
        return None

    return pre, post


def _tuple(value) -> tuple:
    return tuple(value) if isinstance(value, tuple | list) else (value,)


def _copy(model: nn.Module, dtype: torch.dtype) -> tuple[nn.Module, LayerView]:
    """A copy of ``model`` in ``dtype`` and its layer view (the same layers, found on the copy)."""
    copied = copy.deepcopy(model).to(dtype)
    if isinstance(copied, AnalysedNet):
        copied._view = None
    return copied, view(copied)


@torch.no_grad()
def linearised_logits(
    model: nn.Module, x: torch.Tensor, starts: Sequence[int], *, weights_only: bool = False, chunk_size: int = 1024
) -> dict[int, torch.Tensor]:
    """``{l: logits}`` of L-map pruning from each start layer l in 1..D+1 (methods.md §5, §27): the model with
    everything from layer l's Linear/Conv on linearised, in the model's own dtype (the tail has the network's own
    operations, so no more rounding than the network); ``weights_only`` also drops BatchNorm and biases there (the
    printed weight-only formula, §5.1)."""
    dtype = next(inner(model).parameters()).dtype
    copied, found = _copy(model, dtype)
    layers = found.layers
    for start in starts:
        if not 1 <= start <= len(layers) + 1:
            raise ValueError(f"start layer must be in 1..{len(layers) + 1}, got {start}")
    net = inner(copied)
    out: dict[int, list[torch.Tensor]] = {start: [] for start in starts}
    with eval_mode(net):
        for begin in range(0, len(x), chunk_size):
            batch = x[begin : begin + chunk_size].to(dtype)
            for start in starts:
                pre, post = _linearising_hooks(layers, start, weights_only=weights_only)
                with _hooks(net, pre, post):
                    out[start].append(copied(batch))
    return {start: torch.cat(parts) for start, parts in out.items()}


def readouts(model: nn.Module, layers: Sequence[int], x: torch.Tensor) -> dict[int, torch.Tensor]:
    """``{m: A^{(m)}}`` [N_m, C] float64 of analysed layers ``layers`` (1-based): d logit_k / d field of the
    linearised network, summed over positions per channel (methods.md §6.1, §27). Each is measured at the first two
    rows of ``x`` (the second with the field shifted by one) and checked to agree (NotAffineError otherwise)."""
    copied, found = _copy(model, torch.float64)
    net = inner(copied)
    result = {}
    for layer in layers:
        if not 1 <= layer <= len(found.layers):
            raise ValueError(f"RPD layer must be an analysed layer 1..{len(found.layers)}, got {layer}")
        result[layer] = _readout(copied, net, found.layers, layer, x.double())
    return result


def readout(model: nn.Module, layer: int, x: torch.Tensor) -> torch.Tensor:
    """:func:`readouts` of one layer."""
    return readouts(model, [layer], x)[layer]


def _readout(copied: nn.Module, net: nn.Module, layers: Sequence[Layer], layer: int, x: torch.Tensor) -> torch.Tensor:
    results = []
    for row, shift in ((0, 0.0), (min(1, len(x) - 1), 1.0)):
        leaves = {}

        def substitute(field, shift=shift, leaves=leaves):
            z = (field.detach() + shift).requires_grad_(True)
            leaves["z"] = z
            return z

        pre, post = _linearising_hooks(layers, layer, substitute=substitute)
        with eval_mode(net), _hooks(net, pre, post), torch.enable_grad():
            logits = copied(x[row : row + 1])
            classes = logits.shape[1]
            z = leaves["z"]
            rows = [torch.autograd.grad(logits[0, k], z, retain_graph=k < classes - 1)[0][0] for k in range(classes)]
        gradient = torch.stack(rows, dim=-1)  # [N, *positions, C]
        results.append(gradient.flatten(1, -2).sum(1) if gradient.dim() > 2 else gradient)
    first, second = results
    scale = float(first.abs().max()) or 1.0
    if not torch.allclose(first, second, rtol=1e-7, atol=1e-9 * scale):
        raise NotAffineError(
            f"layer {layers[layer - 1].name}: the network after it is not linear once its activation modules are the "
            "identity (a functional nonlinearity such as F.relu, or a LayerNorm, that hooks cannot replace)"
        )
    return first


def producers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every Linear and Conv module of ``model`` in registration order: what weight-space noise perturbs."""
    return [(name, module) for name, module in _leaves(inner(model)) if isinstance(module, PRODUCER_TYPES)]


@torch.no_grad()
def head(model: nn.Module) -> tuple[nn.Linear | None, str]:
    """``(the Linear that maps the last analysed layer's output to the logits, "")``, or ``(None, why)`` where the
    logits are not one Linear of it (a conv last layer, pooling or more layers in between): the output weight that
    the SVD projection and NC3/NC4 read (methods.md §10, §24)."""
    layers = view(model).layers
    last = layers[-1]
    if last.kind != "linear":
        return None, f"the last analysed layer {last.name} is convolutional"
    linears = [module for _, module in producers(model) if isinstance(module, nn.Linear)]
    final = linears[-1] if linears else None
    if final is None or final.in_features != last.units or final is last.producer:
        return None, f"no Linear output layer takes the {last.units} outputs of {last.name}"
    example = example_input(model)
    hs, xs, logits = capture(model, example)
    if not torch.allclose(final(xs[-1]), logits, rtol=1e-5, atol=1e-6):
        return None, f"the logits are not a Linear of {last.name}'s outputs"
    return final, ""


@torch.no_grad()
def largest_activation(model: nn.Module) -> int:
    """The most numbers one sample's output of any leaf module holds (what sizes a batch of copies)."""
    net, largest = inner(model), 0

    def post(name, module, call, args, output):
        nonlocal largest
        if torch.is_tensor(output) and output.dim() > 0:
            largest = max(largest, output[0].numel())

    with eval_mode(net), _hooks(net, None, post):
        model(example_input(model, rows=1))
    return largest


def evaluation_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` for many forward passes: on the CPU a network with 2-D convolutions is copied in
    channels-last memory order, which oneDNN's CPU convolutions run 1.5-2x faster with one thread (measured in
    benchmarks/RESULTS.md); results differ from the original's by rounding only."""
    copied = copy.deepcopy(model)
    cpu = next(inner(model).parameters()).device.type == "cpu"
    if cpu and any(isinstance(module, nn.Conv2d) for module in inner(model).modules()):
        copied = copied.to(memory_format=torch.channels_last)
    return copied
