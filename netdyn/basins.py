"""Attraction basins of a trained MLP in input space (methods.md §7) and in weight space (methods.md §8).

Input space: the accuracy of ``argmax f(x + ε ξ)`` on a fixed sample set, ξ ~ N(0, I) per pixel (additive,
no clipping, U10), as a function of the amplitude ε. Weight space: the accuracy of the network whose every
``nn.Linear`` weight and bias is perturbed once per draw, ``w -> w (1 + ε ξ)`` (relative, the paper's choice)
or ``w -> w + ε ξ`` (absolute), with BatchNorm γ/β and running statistics untouched (U11). The basin size
is the amplitude at which the accuracy falls to ``fraction`` (0.5) of the clean accuracy, interpolated
linearly in log10 ε between the two grid points around the crossing (U12).

Choices made here (methods.md leaves them open):

* **Common random numbers.** ξ is fresh per sample and per repeat (input) or per draw (weights), as methods.md
  asks, and the *same* ξ is reused across amplitudes. Each amplitude's estimate therefore has exactly the
  distribution of independent draws, while the curve is smoother (the basin size has less variance) and the
  response of the first layer to the noise, ``W ξ`` (input) or ``(W ∘ Ξ) x`` (weights), which is linear in ε,
  is computed once per repeat / draw instead of once per amplitude.
* **acc_std** is the sample standard deviation (``correction=1``) over repeats / draws of the per-repeat
  accuracy; 0 when there is a single repeat.
* **Clean accuracy** for the threshold: ``basin_table`` computes it separately with the unperturbed model in
  eval mode and passes it to ``basin_size``.
* Eval mode throughout: BatchNorm is the affine map given by its stored running statistics, Dropout is the
  identity. The model's own mode and parameters are left as they were.

Both curves are evaluated in batched passes: many (amplitude, repeat/draw) copies of the sample set go
through one matmul / ``baddbmm`` per layer, in chunks whose activations and perturbed weights hold at most
``max_batch_elements`` numbers each. Everything runs on the device of ``x``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from netdyn.config import ANALYSIS_DEFAULTS
from netdyn.evaluate import eval_mode
from netdyn.layers import Block, blocks, is_general
from netdyn.layerview import evaluation_copy, largest_activation, producers


def amplitude_grid(spec: Mapping[str, float]) -> np.ndarray:
    """The log-spaced amplitudes of a grid setting ``{start, stop, num}`` (powers of ten, docs/config.md)."""
    return np.logspace(spec["start"], spec["stop"], int(spec["num"]))


# The defaults are the config's (netdyn.config.ANALYSIS_DEFAULTS, methods.md §16 U10-U12), stated once there.
INPUT_AMPLITUDES: tuple[float, ...] = tuple(amplitude_grid(ANALYSIS_DEFAULTS["input_amplitudes"]).tolist())
WEIGHT_AMPLITUDES: tuple[float, ...] = tuple(amplitude_grid(ANALYSIS_DEFAULTS["weight_amplitudes"]).tolist())
INPUT_REPEATS: int = ANALYSIS_DEFAULTS["input_repeats"]
WEIGHT_DRAWS: int = ANALYSIS_DEFAULTS["weight_draws"]
BASIN_FRACTION: float = ANALYSIS_DEFAULTS["basin_fraction"]  # methods.md §7: 50% of the clean accuracy [PAPER]
FIXED_INPUT_AMPLITUDES: tuple[float, ...] = tuple(ANALYSIS_DEFAULTS["tracked_input_amplitudes"])  # Fig. 6(a), §7
# Default cap on the elements of one activation / stacked-weight buffer. On the CPU the matmuls are compute-bound
# already at a few copies and cache-sized buffers measured fastest (2**19 floats = 2 MiB; ~10% faster than 2**23
# on a 8x256 net); on a GPU larger batches keep it busy (2**26 floats = 256 MiB).
CPU_BATCH_ELEMENTS = 2**19
GPU_BATCH_ELEMENTS = 2**26

Amplitudes = Sequence[float] | torch.Tensor | np.ndarray
WeightNoise = list[tuple[torch.Tensor, torch.Tensor | None]]


# ----------------------------------------------------------------------------------------------------------
# shared helpers


def _amplitude_list(amplitudes: Amplitudes) -> list[float]:
    values = [float(a) for a in (amplitudes.tolist() if hasattr(amplitudes, "tolist") else amplitudes)]
    if any(not math.isfinite(a) or a < 0 for a in values):
        raise ValueError("amplitudes must be finite and >= 0")
    return values


def _device_generator(generator: torch.Generator | None, device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded from ``generator`` (from torch's global RNG when None)."""
    if generator is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    else:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
    return torch.Generator(device=device).manual_seed(seed)


def _bn_affine(block: Block) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Eval-mode BatchNorm of ``block`` as ``h -> scale * h + shift`` (None without BatchNorm)."""
    bn = block.bn
    if bn is None:
        return None
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("BatchNorm without running statistics (track_running_stats=False) has no eval-mode map")
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.affine:
        scale = scale * bn.weight.detach()
    shift = -bn.running_mean * scale
    if bn.affine:
        shift = shift + bn.bias.detach()
    return scale, shift


def _folded(block: Block) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(W', c, scale)``: the Linear with eval BatchNorm folded in (``scale`` is the BN scale or None)."""
    weight = block.linear.weight.detach()
    bias = block.linear.bias.detach() if block.linear.bias is not None else torch.zeros_like(weight[:, 0])
    affine = _bn_affine(block)
    if affine is None:
        return weight, bias, None
    scale, shift = affine
    return scale[:, None] * weight, scale * bias + shift, scale


def _activate(block: Block, h: torch.Tensor) -> torch.Tensor:
    """Apply the block's activation, in place where that is safe (ReLU / identity)."""
    if isinstance(block.act, nn.ReLU):
        return h.relu_()
    if isinstance(block.act, nn.Identity):
        return h
    return block.act(h)


def _copy_width(chain: list[Block]) -> int:
    """Widest per-copy activation: every layer's output (inputs of later layers are earlier outputs)."""
    return max(block.linear.out_features for block in chain)


def _budget(max_batch_elements: int | None, device: torch.device) -> int:
    if max_batch_elements is None:
        return CPU_BATCH_ELEMENTS if device.type == "cpu" else GPU_BATCH_ELEMENTS
    if max_batch_elements < 1:
        raise ValueError("max_batch_elements must be >= 1")
    return int(max_batch_elements)


def _mean_std(per_copy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and sample std over axis 1 (repeats / draws) of ``[A, R]``; std 0 for a single repeat."""
    mean = per_copy.mean(dim=1)
    std = per_copy.std(dim=1, correction=1) if per_copy.shape[1] > 1 else torch.zeros_like(mean)
    return mean, std


def _prepare(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[list[Block] | None, torch.Tensor, torch.Tensor]:
    """``(chain, flat x in the model's dtype, y)``; ``chain`` is None for a module analysed through its layer view."""
    chain = None if is_general(model) else blocks(model)
    dtype = next(model.parameters()).dtype
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"x and y must hold the same, non-zero number of samples ({x.shape[0]} vs {y.shape[0]})")
    return chain, x.flatten(1).to(dtype), y.to(x.device).long()


@torch.no_grad()
def unperturbed_accuracy(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, batch_size: int = 10_000) -> float:
    """Accuracy of the unperturbed model in eval mode (its mode is restored afterwards)."""
    _, xf, y = _prepare(model, x, y)
    correct = 0
    with eval_mode(model):
        for start in range(0, len(xf), batch_size):
            logits = model(xf[start : start + batch_size])
            correct += int((logits.argmax(1) == y[start : start + batch_size]).sum())
    return correct / len(xf)


# ----------------------------------------------------------------------------------------------------------
# input space (methods.md §7)


def _input_correct_one_repeat(
    chain: list[Block], x: torch.Tensor, y: torch.Tensor, noise: torch.Tensor, amplitudes: list[float], budget: int
) -> torch.Tensor:
    """Number of correctly classified samples of ``x + ε noise`` for every ε of ``amplitudes``."""
    affines = [_folded(block)[:2] for block in chain]  # no weight is perturbed here, so BatchNorm folds exactly
    width = _copy_width(chain)
    n_chunk = max(1, min(len(x), budget // max(width, x.shape[1])))
    k_chunk = max(1, min(len(amplitudes), budget // (n_chunk * width)))
    eps_all = torch.tensor(amplitudes, dtype=x.dtype, device=x.device)
    correct = torch.zeros(len(amplitudes), dtype=torch.long, device=x.device)
    first_weight, first_shift = affines[0]
    for s0 in range(0, len(x), n_chunk):
        xs, ys = x[s0 : s0 + n_chunk], y[s0 : s0 + n_chunk]
        n = len(xs)
        # W (x + ε ξ) + c = (W x + c) + ε (W ξ): the first layer's response to the noise is computed once.
        clean_field = torch.addmm(first_shift, xs, first_weight.T)
        noise_field = noise[s0 : s0 + n_chunk] @ first_weight.T
        for a0 in range(0, len(amplitudes), k_chunk):
            eps = eps_all[a0 : a0 + k_chunk]
            k = len(eps)
            h = torch.addcmul(clean_field.unsqueeze(0), eps.view(k, 1, 1), noise_field.unsqueeze(0)).view(k * n, -1)
            for previous, (weight, shift) in zip(chain[:-1], affines[1:], strict=True):
                h = torch.addmm(shift, _activate(previous, h), weight.T)
            predictions = h.view(k, n, -1).argmax(dim=2)
            correct[a0 : a0 + k] += (predictions == ys.unsqueeze(0)).sum(dim=1)
    return correct


def _copy_rows(model: nn.Module, x: torch.Tensor, budget: int) -> int:
    """How many samples a batch of the general paths holds: their largest activation about ``budget`` numbers."""
    return max(1, budget // max(x.shape[1], largest_activation(model)))


def _input_counter(model, chain, x, y, amplitudes, budget) -> Callable[[torch.Tensor], torch.Tensor]:
    """The count of correct predictions per amplitude as a function of one noise draw; the general path's evaluation
    copy and batch size are made once, for every draw."""
    if chain is not None:
        return lambda noise: _input_correct_one_repeat(chain, x, y, noise, amplitudes, budget)
    network = evaluation_copy(model)
    rows = _copy_rows(model, x, budget)
    return lambda noise: _general_input_correct(network, x, y, noise, amplitudes, rows)


def _general_input_correct(
    network: nn.Module, x: torch.Tensor, y: torch.Tensor, noise: torch.Tensor, amplitudes: list[float], rows: int
) -> torch.Tensor:
    """:func:`_input_correct_one_repeat` for any module: the (amplitude, sample) copies go through ``network`` (a
    channels-last copy on the CPU: :func:`netdyn.layerview.evaluation_copy`) in batches of ``rows`` copies, whose
    largest activation is cache-sized on the CPU: a conv net's forward pass is memory-bound at large batches there
    (benchmarks/RESULTS.md)."""
    n_chunk = max(1, min(len(x), rows))
    k_chunk = max(1, min(len(amplitudes), rows // n_chunk))
    eps_all = torch.tensor(amplitudes, dtype=x.dtype, device=x.device)
    correct = torch.zeros(len(amplitudes), dtype=torch.long, device=x.device)
    for s0 in range(0, len(x), n_chunk):
        xs, ys, xi = x[s0 : s0 + n_chunk], y[s0 : s0 + n_chunk], noise[s0 : s0 + n_chunk]
        for a0 in range(0, len(amplitudes), k_chunk):
            eps = eps_all[a0 : a0 + k_chunk]
            copies = torch.addcmul(xs.unsqueeze(0), eps.view(-1, 1, 1), xi.unsqueeze(0))
            predictions = network(copies.flatten(0, 1)).view(len(eps), len(xs), -1).argmax(dim=2)
            correct[a0 : a0 + len(eps)] += (predictions == ys.unsqueeze(0)).sum(dim=1)
    return correct


@torch.no_grad()
def input_basin_accuracies(
    model: nn.Sequential,
    x: torch.Tensor,
    y: torch.Tensor,
    amplitudes: Amplitudes,
    noise: torch.Tensor,
    *,
    max_batch_elements: int | None = None,
) -> torch.Tensor:
    """Accuracy ``[A, R]`` of the eval-mode model on ``x + ε_a noise[r]`` for explicit noise ``[R, *x.shape]``."""
    chain, xf, y = _prepare(model, x, y)
    eps = _amplitude_list(amplitudes)
    noise = noise.reshape(noise.shape[0], *xf.shape).to(xf)
    with eval_mode(model):
        count_correct = _input_counter(model, chain, xf, y, eps, _budget(max_batch_elements, xf.device))
        per_repeat = [count_correct(xi) for xi in noise]
    return torch.stack(per_repeat, dim=1).double().cpu() / len(xf)


@torch.no_grad()
def input_basin_curve(
    model: nn.Sequential,
    x: torch.Tensor,
    y: torch.Tensor,
    amplitudes: Amplitudes = INPUT_AMPLITUDES,
    *,
    repeats: int = INPUT_REPEATS,
    generator: torch.Generator | None = None,
    max_batch_elements: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std over ``repeats`` of the accuracy on ``x + ε ξ``, ξ ~ N(0, I) per pixel (methods.md §7, U10).

    ξ is drawn once per repeat (fresh per sample and repeat, shared across amplitudes) from a generator on
    ``x.device`` seeded from ``generator``. Returns two float64 CPU tensors of length ``len(amplitudes)``.
    """
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    chain, xf, y = _prepare(model, x, y)
    eps = _amplitude_list(amplitudes)
    noise_generator = _device_generator(generator, xf.device)
    per_repeat = []
    with eval_mode(model):
        count_correct = _input_counter(model, chain, xf, y, eps, _budget(max_batch_elements, xf.device))
        for _ in range(repeats):
            xi = torch.randn(xf.shape, generator=noise_generator, dtype=xf.dtype, device=xf.device)
            per_repeat.append(count_correct(xi))
    return _mean_std(torch.stack(per_repeat, dim=1).double().cpu() / len(xf))


# ----------------------------------------------------------------------------------------------------------
# weight space (methods.md §8)


def draw_weight_noise(
    model: nn.Sequential,
    draws: int,
    generator: torch.Generator | None = None,
    *,
    device: torch.device | str | None = None,
) -> WeightNoise:
    """ξ ~ N(0, 1) for every Linear weight and bias, ``draws`` times: per block ``([D, out, in], [D, out])``.

    Drawn in a fixed order, draw by draw and within a draw block by block (weight, then bias), from a
    generator on ``device`` (default: the model's) seeded from ``generator``. A block whose Linear has no
    bias gets ``None``.
    """
    if draws < 1:
        raise ValueError("draws must be >= 1")
    perturbed = _perturbed_modules(model)
    device = torch.device(device) if device is not None else perturbed[0].weight.device
    noise_generator = _device_generator(generator, device)
    dtype = perturbed[0].weight.dtype
    noise: WeightNoise = []
    for linear in perturbed:
        weight_noise = torch.empty(draws, *linear.weight.shape, dtype=dtype, device=device)
        bias_noise = None if linear.bias is None else torch.empty(draws, *linear.bias.shape, dtype=dtype, device=device)
        noise.append((weight_noise, bias_noise))
    for d in range(draws):
        for weight_noise, bias_noise in noise:
            weight_noise[d].normal_(generator=noise_generator)
            if bias_noise is not None:
                bias_noise[d].normal_(generator=noise_generator)
    return noise


def _perturbed_modules(model: nn.Module) -> list[nn.Module]:
    """The modules whose weight and bias the weight-space noise perturbs: an MLP's Linear layers in order; any other
    module's Linear and Conv layers in registration order (methods.md §27)."""
    if is_general(model):
        return [module for _, module in producers(model)]
    return [block.linear for block in blocks(model)]


class _PerturbedBlock:
    """One block's Linear (eval BatchNorm folded in after the perturbation) and its draws of noise.

    For BN scale s and shift t, ``BN(W~ x + b~) = (s W~) x + (s b~ + t)``, and for both noise kinds the
    perturbed folded weight is ``s W~ = s W + ε s D`` with ``D = W ∘ Ξ`` (relative) or ``Ξ`` (absolute):
    the perturbation acts on the Linear alone, BatchNorm is applied to its output unchanged.
    """

    def __init__(self, block: Block, noise: tuple[torch.Tensor, torch.Tensor | None], relative: bool) -> None:
        self.weight, self.shift, scale = _folded(block)
        self.weight_noise, self.bias_noise = noise
        out_features = self.weight.shape[0]
        if self.weight_noise.shape[1:] != self.weight.shape:
            raise ValueError(
                f"weight noise of shape {tuple(self.weight_noise.shape)} for weight {tuple(self.weight.shape)}"
            )
        scale = scale if scale is not None else torch.ones_like(self.shift)
        # Per-entry factor that turns ξ into the folded perturbation direction s D.
        self.weight_factor = self.weight if relative else scale[:, None].expand_as(self.weight)
        bias = block.linear.bias
        if bias is None or self.bias_noise is None:
            self.bias_factor = None
        else:
            self.bias_factor = scale * bias.detach() if relative else scale
            if self.bias_noise.shape[1:] != (out_features,):
                raise ValueError(f"bias noise of shape {tuple(self.bias_noise.shape)} for {out_features} outputs")

    def directions(self, draws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Folded perturbation directions ``s D`` and ``s d_b`` of the given draws."""
        weight_dir = self.weight_noise.index_select(0, draws).mul_(self.weight_factor)
        if self.bias_factor is None:
            return weight_dir, None
        return weight_dir, self.bias_noise.index_select(0, draws).mul_(self.bias_factor)

    def perturbed(self, draws: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stacked folded weights ``[K, out, in]`` and shifts ``[K, out]`` of copies (draw_k, ε_k)."""
        weight_dir, bias_dir = self.directions(draws)
        weights = weight_dir.mul_(eps.view(-1, 1, 1)).add_(self.weight)
        if bias_dir is None:
            shifts = self.shift.expand(len(draws), -1)
        else:
            shifts = bias_dir.mul_(eps.view(-1, 1)).add_(self.shift)
        return weights, shifts


def _weight_correct(
    layers: list[_PerturbedBlock],
    chain: list[Block],
    x: torch.Tensor,
    y: torch.Tensor,
    draws: int,
    amplitudes: list[float],
    budget: int,
) -> torch.Tensor:
    """Correct counts ``[draws, A]`` of every (draw, amplitude) copy of the perturbed network."""
    n_amplitudes, n_copies = len(amplitudes), draws * len(amplitudes)
    width = _copy_width(chain)
    first = layers[0]
    first_out = first.weight.shape[0]
    largest_weight = max([layer.weight.numel() for layer in layers[1:]], default=1)
    n_chunk = max(1, min(len(x), budget // max(width, x.shape[1], draws * first_out)))
    k_chunk = max(1, min(n_copies, budget // (n_chunk * width), budget // largest_weight))
    eps_all = torch.tensor(amplitudes, dtype=x.dtype, device=x.device)
    correct = torch.zeros(n_copies, dtype=torch.long, device=x.device)
    first_dir_w, first_dir_b = first.directions(torch.arange(draws, device=x.device))
    first_dir_w = first_dir_w.reshape(-1, x.shape[1])  # [draws * out, in]: one matmul serves every draw
    for s0 in range(0, len(x), n_chunk):
        xs, ys = x[s0 : s0 + n_chunk], y[s0 : s0 + n_chunk]
        n = len(xs)
        # First layer: (s W + ε s D) x + (c + ε s d_b) = clean field + ε (noise field of the draw), so the
        # first layer costs one matmul per draw instead of one per copy.
        clean_field = torch.addmm(first.shift, xs, first.weight.T)
        noise_field = (xs @ first_dir_w.T).view(n, draws, first_out).transpose(0, 1)
        if first_dir_b is not None:
            noise_field = noise_field + first_dir_b.unsqueeze(1)
        for c0 in range(0, n_copies, k_chunk):
            copies = torch.arange(c0, min(c0 + k_chunk, n_copies), device=x.device)
            draw_of_copy, eps = copies // n_amplitudes, eps_all[copies % n_amplitudes]
            k = len(copies)
            h = torch.addcmul(clean_field.unsqueeze(0), eps.view(k, 1, 1), noise_field.index_select(0, draw_of_copy))
            for previous, layer in zip(chain[:-1], layers[1:], strict=True):
                weights, shifts = layer.perturbed(draw_of_copy, eps)
                h = torch.baddbmm(shifts.unsqueeze(1), _activate(previous, h), weights.transpose(1, 2))
            correct[c0 : c0 + k] += (h.argmax(dim=2) == ys.unsqueeze(0)).sum(dim=1)
    return correct.view(draws, n_amplitudes)


@torch.no_grad()
def weight_basin_accuracies(
    model: nn.Sequential,
    x: torch.Tensor,
    y: torch.Tensor,
    amplitudes: Amplitudes,
    noise: WeightNoise,
    *,
    relative: bool = True,
    max_batch_elements: int | None = None,
) -> torch.Tensor:
    """Accuracy ``[A, D]`` of the network perturbed with explicit ``noise`` (as from ``draw_weight_noise``).

    Copy (a, d) has every Linear weight and bias ``w -> w (1 + ε_a ξ_d)`` (relative) or ``w + ε_a ξ_d``
    (absolute); BatchNorm runs in eval mode with its stored statistics. The model itself is not modified.
    """
    chain, xf, y = _prepare(model, x, y)
    modules = _perturbed_modules(model)
    if len(noise) != len(modules):
        raise ValueError(f"noise has {len(noise)} blocks, the model {len(modules)}")
    eps = _amplitude_list(amplitudes)
    draws = noise[0][0].shape[0]
    if chain is None:
        budget = _budget(max_batch_elements, xf.device)
        return _general_weight_accuracies(model, modules, xf, y, eps, noise, relative, budget)
    with eval_mode(model):
        layers = [
            _PerturbedBlock(block, (w.to(xf), None if b is None else b.to(xf)), relative)
            for block, (w, b) in zip(chain, noise, strict=True)
        ]
        correct = _weight_correct(layers, chain, xf, y, draws, eps, _budget(max_batch_elements, xf.device))
    return correct.T.double().cpu() / len(xf)


def _general_weight_accuracies(
    model: nn.Module,
    modules: list[nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    amplitudes: list[float],
    noise: WeightNoise,
    relative: bool,
    budget: int,
) -> torch.Tensor:
    """:func:`weight_basin_accuracies` for any module: each (draw, amplitude) copy is an evaluation copy of the module
    (:func:`netdyn.layerview.evaluation_copy`) with its Linear and Conv weights and biases perturbed from the originals,
    evaluated in cache-sized batches; the model itself is not touched."""
    draws = noise[0][0].shape[0]
    network = evaluation_copy(model)
    targets = _perturbed_modules(network)  # the same modules of the copy, in the same order
    rows = _copy_rows(model, x, budget)
    correct = torch.zeros(len(amplitudes), draws, dtype=torch.long)
    with eval_mode(network):
        for d in range(draws):
            for a, eps in enumerate(amplitudes):
                for source, target, (weight_noise, bias_noise) in zip(modules, targets, noise, strict=True):
                    weight = source.weight.detach()
                    step = weight_noise[d].to(weight) * eps
                    target.weight.copy_(weight * (1 + step) if relative else weight + step)
                    if source.bias is not None and bias_noise is not None:
                        bias = source.bias.detach()
                        step = bias_noise[d].to(bias) * eps
                        target.bias.copy_(bias * (1 + step) if relative else bias + step)
                for start in range(0, len(x), rows):
                    logits = network(x[start : start + rows])
                    correct[a, d] += int((logits.argmax(1) == y[start : start + rows]).sum())
    return correct.double() / len(x)


@torch.no_grad()
def weight_basin_curve(
    model: nn.Sequential,
    x: torch.Tensor,
    y: torch.Tensor,
    amplitudes: Amplitudes = WEIGHT_AMPLITUDES,
    *,
    draws: int = WEIGHT_DRAWS,
    relative: bool = True,
    generator: torch.Generator | None = None,
    max_batch_elements: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std over ``draws`` of the accuracy of the weight-perturbed network (methods.md §8, U11).

    Each draw perturbs every Linear weight and bias once (``draw_weight_noise``); the same draw is scaled by
    every amplitude. Returns two float64 CPU tensors of length ``len(amplitudes)``. The noise of all draws is
    held in memory at once (``draws`` times the parameter count).
    """
    noise = draw_weight_noise(model, draws, generator, device=x.device)
    per_draw = weight_basin_accuracies(
        model, x, y, amplitudes, noise, relative=relative, max_batch_elements=max_batch_elements
    )
    return _mean_std(per_draw)


# ----------------------------------------------------------------------------------------------------------
# basin size and the table the workflow writes


def basin_size(
    amplitudes: Amplitudes,
    accuracy: Amplitudes,
    *,
    fraction: float = BASIN_FRACTION,
    clean_accuracy: float | None = None,
) -> tuple[float, str]:
    """Amplitude where the accuracy first falls to ``fraction`` of the clean accuracy (methods.md §7, U12).

    ``acc_0`` is ``clean_accuracy`` when given (the proposed default: the unperturbed model, computed
    separately), else ``accuracy[0]`` when ``amplitudes[0] == 0``. Zero amplitudes are skipped in the search.
    With the first positive grid index j where ``accuracy[j] <= fraction * acc_0``, the size is interpolated
    linearly in log10 ε between ε_{j-1} and ε_j. Returns ``(size, status)`` with status

    * ``"ok"``;
    * ``"beyond_grid"``: the threshold is never reached; size is nan (report it as "> ε_max");
    * ``"below_grid"``: the accuracy is already at or below the threshold at the first positive amplitude;
      size is nan (report it as "< ε_min");
    * ``"degenerate"``: acc_0 is 0 or nan; size is nan.
    """
    eps = np.asarray(_amplitude_list(amplitudes), dtype=float)
    acc = np.asarray(accuracy.tolist() if hasattr(accuracy, "tolist") else accuracy, dtype=float)
    if eps.shape != acc.shape or eps.ndim != 1 or len(eps) == 0:
        raise ValueError(f"amplitudes and accuracy must be 1-D of equal length, got {eps.shape} and {acc.shape}")
    if np.any(np.diff(eps) <= 0):
        raise ValueError("amplitudes must be strictly increasing")
    if not 0 < fraction < 1:
        raise ValueError("fraction must lie in (0, 1)")
    if clean_accuracy is None:
        if eps[0] != 0:
            raise ValueError("give clean_accuracy, or start the grid at amplitude 0")
        clean_accuracy = float(acc[0])
    if math.isnan(clean_accuracy) or clean_accuracy <= 0:
        return math.nan, "degenerate"
    positive = eps > 0
    eps, acc = eps[positive], acc[positive]
    if len(eps) == 0:
        raise ValueError("the amplitude grid has no positive amplitude")
    if np.any(np.isnan(acc)):
        raise ValueError("accuracy contains nan")
    threshold = fraction * clean_accuracy
    below = np.flatnonzero(acc <= threshold)
    if len(below) == 0:
        return math.nan, "beyond_grid"
    j = int(below[0])
    if j == 0:
        return math.nan, "below_grid"
    # acc[j-1] > threshold >= acc[j], so the denominator is negative and the weight lies in (0, 1].
    weight = (acc[j - 1] - threshold) / (acc[j - 1] - acc[j])
    log_eps = math.log10(eps[j - 1]) + weight * (math.log10(eps[j]) - math.log10(eps[j - 1]))
    return 10.0**log_eps, "ok"


def basin_table(
    model: nn.Sequential,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    input_amplitudes: Amplitudes = INPUT_AMPLITUDES,
    weight_amplitudes: Amplitudes = WEIGHT_AMPLITUDES,
    repeats: int = INPUT_REPEATS,
    draws: int = WEIGHT_DRAWS,
    seed: int = 0,
    relative: bool = True,
    fraction: float = BASIN_FRACTION,
    max_batch_elements: int | None = None,
) -> tuple[list[dict[str, float | str]], dict[str, tuple[float, str]]]:
    """Both basin curves and sizes of one model on ``(x, y)`` (methods.md §7, §8).

    Returns ``rows`` (dicts with ``space`` in {"input", "weight"}, ``amplitude``, ``accuracy``,
    ``accuracy_std``; the ``basins.csv`` columns minus ``step``) and ``sizes`` =
    ``{"basin_input": (size, status), "basin_weight": (size, status)}``, thresholds taken against the clean
    accuracy of the unperturbed model. The input and weight noises come from independent streams of ``seed``.
    """
    input_seed, weight_seed = (int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(2))
    acc_0 = unperturbed_accuracy(model, x, y)
    curves = {
        "input": (
            input_amplitudes,
            input_basin_curve(
                model,
                x,
                y,
                input_amplitudes,
                repeats=repeats,
                generator=torch.Generator().manual_seed(input_seed),
                max_batch_elements=max_batch_elements,
            ),
        ),
        "weight": (
            weight_amplitudes,
            weight_basin_curve(
                model,
                x,
                y,
                weight_amplitudes,
                draws=draws,
                relative=relative,
                generator=torch.Generator().manual_seed(weight_seed),
                max_batch_elements=max_batch_elements,
            ),
        ),
    }
    rows: list[dict[str, float | str]] = []
    sizes: dict[str, tuple[float, str]] = {}
    for space, (amplitudes, (mean, std)) in curves.items():
        eps = _amplitude_list(amplitudes)
        rows.extend(
            {"space": space, "amplitude": a, "accuracy": float(m), "accuracy_std": float(s)}
            for a, m, s in zip(eps, mean.tolist(), std.tolist(), strict=True)
        )
        sizes[f"basin_{space}"] = basin_size(eps, mean, fraction=fraction, clean_accuracy=acc_0)
    return rows, sizes
