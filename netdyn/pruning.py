"""LP and L-map pruning: replace layers ``l..L`` of an MLP by one linear map fed with ``x^{(l-1)}``.

* **L-map** (methods.md §5): the affine map ``x^{(l-1)} -> logits`` obtained by setting the activations of layers
  ``l..L-1`` to the identity, with eval-mode BatchNorm folded into each Linear and Dropout off (§5.2, the proposed
  primary form U7). In PyTorch orientation ``M(l) = W̃_L @ ... @ W̃_l`` (``[C, N_{l-1}]``) plus the propagated
  shift ``c(l)``. ``fold_bn=False, bias=False`` gives the printed weight-only formula ``W_L @ ... @ W_l`` (§5.1),
  reported as an ablation. No training is involved.
* **LP** (methods.md §4): least-squares linear perceptron from a layer's outputs ``x^{(m)}`` to the trained
  network's logits ``h^{(L)}`` (not the labels), affine by default (U6), solved in float64.
* **Pruning from start layer l** (§4, §5.3): layers ``1..l-1`` are kept, so both maps are fed with ``x^{(l-1)}``
  (``x^{(0)}`` = the input); the score is the argmax accuracy against the true labels.

LP solver (U6): the affine fit centres the features and solves the normal equations of the centred problem from a
float64 Gram matrix accumulated in row chunks, so memory stays ``O(N^2 + chunk * N)`` for P = 60k, N = 1024. The
Gram matrix's eigenvalues (``eigvalsh``) give the condition number; the solution is a Cholesky solve, or, where
directions are dropped at round-off level (``ridge=0`` on rank-deficient features), the eigenvector form of the
minimum-norm solution. With ``ridge=None``
(the default) a ridge ``λ = 1e-6 · tr(XᵀX)/(N+1)`` (``X`` = the uncentred design with its column of ones, as §4
writes it) is added exactly when the Gram matrix is rank deficient or ill-conditioned, i.e. its condition number
exceeds ``cond_limit = 1e10`` (condition number of the centred features above 1e5). A number given as ``ridge`` is
the relative factor in place of 1e-6 and is always applied; ``ridge=0`` is the plain (minimum-norm) least squares.
The intercept is never penalized. Centring is exact for least squares and keeps pixel and ReLU features (large
common mean) well conditioned.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from netdyn.layers import Block, blocks, depth, folded_affine, is_general
from netdyn.layerview import linearised_logits

DEFAULT_RIDGE = 1e-6
DEFAULT_COND_LIMIT = 1e10
_CHUNK_ROWS = 8192


def _tensor(values: Any, device: torch.device | None = None) -> torch.Tensor:
    """``values`` (tensor or numpy array) as a tensor with samples in rows; images are flattened."""
    tensor = torch.as_tensor(values, device=device)
    return tensor.flatten(1) if tensor.dim() > 2 else tensor


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _affine64(block: Block, fold_bn: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The block's ``(W, b)`` in float64; the BN folding itself is done in float64 on a copy of the modules."""
    linear = copy.deepcopy(block.linear).double()
    if fold_bn and block.bn is not None:
        return folded_affine(Block(linear, copy.deepcopy(block.bn).double()))
    weight = linear.weight.detach()
    bias = linear.bias.detach() if linear.bias is not None else torch.zeros_like(weight[:, 0])
    return weight, bias


@torch.no_grad()
def _suffix_maps(model: nn.Sequential, fold_bn: bool, stop: int = 1) -> Iterator[tuple[int, Any, Any]]:
    """Yield ``(l, M(l), c(l))`` for ``l = L, L-1, ..., stop``, built backwards from the output.

    Going backwards keeps every step a ``[C, N_l] @ [N_l, N_{l-1}]`` product (cheap), where the forward order
    would multiply ``N × N`` matrices.
    """
    chain = blocks(model)
    matrix = shift = None
    for start in range(len(chain), stop - 1, -1):
        weight, offset = _affine64(chain[start - 1], fold_bn)
        if matrix is None:
            matrix, shift = weight.clone(), offset.clone()
        else:
            matrix, shift = matrix @ weight, matrix @ offset + shift
        yield start, matrix, shift


def lmap(model: nn.Sequential, start_layer: int, *, fold_bn: bool = True, bias: bool = True) -> tuple[Any, Any]:
    """The L-map from ``x^{(start_layer-1)}`` to the logits as ``(M [C, N_{l-1}], c [C])``, float64 (methods.md §5).

    ``fold_bn`` folds each eval-mode BatchNorm into its Linear (§5.2); ``bias`` propagates the (folded) biases
    into ``c``, otherwise ``c = 0``. ``fold_bn=False`` ignores BatchNorm entirely (the weight-only formula of §5.1
    when also ``bias=False``). ``start_layer`` runs from 1 (whole network linearized) to L (the output layer alone,
    exact for any activation).
    """
    layers = len(blocks(model))
    if not 1 <= start_layer <= layers:
        raise ValueError(f"start_layer must be in 1..{layers} (L), got {start_layer}")
    _, matrix, shift = list(_suffix_maps(model, fold_bn, stop=start_layer))[-1]
    return matrix, shift if bias else torch.zeros_like(shift)


def lmap_all(model: nn.Sequential, *, fold_bn: bool = True, bias: bool = True) -> list[tuple[Any, Any]]:
    """``[lmap(model, l) for l in 1..L]`` in one backward sweep (index ``l - 1``)."""
    maps = [(matrix, shift if bias else torch.zeros_like(shift)) for _, matrix, shift in _suffix_maps(model, fold_bn)]
    return maps[::-1]


def affine_logits(matrix: torch.Tensor, shift: torch.Tensor, features: Any) -> torch.Tensor:
    """``features @ Mᵀ + c`` in float64 on the device of ``features``, in row chunks."""
    features = _tensor(features)
    matrix, shift = matrix.to(features.device, torch.float64), shift.to(features.device, torch.float64)
    out = torch.empty(len(features), matrix.shape[0], dtype=torch.float64, device=features.device)
    for start in range(0, len(features), _CHUNK_ROWS):
        out[start : start + _CHUNK_ROWS] = features[start : start + _CHUNK_ROWS].double() @ matrix.T + shift
    return out


def lmap_logits(
    model: nn.Sequential, start_layer: int, x_prev: Any, *, fold_bn: bool = True, bias: bool = True
) -> torch.Tensor:
    """Logits of the network pruned at ``start_layer`` by its L-map, fed with ``x_prev = x^{(start_layer-1)}``."""
    matrix, shift = lmap(model, start_layer, fold_bn=fold_bn, bias=bias)
    return affine_logits(matrix, shift, x_prev)


def accuracy(logits: torch.Tensor, labels: Any) -> float:
    """Fraction of rows whose argmax equals the label."""
    labels = torch.as_tensor(labels, device=logits.device)
    return float((logits.argmax(dim=1) == labels).double().mean())


def lmap_accuracy(
    model: nn.Sequential, start_layer: int, x_prev: Any, labels: Any, *, fold_bn: bool = True, bias: bool = True
) -> float:
    """Test accuracy of L-map pruning from ``start_layer`` (methods.md §5.3)."""
    return accuracy(lmap_logits(model, start_layer, x_prev, fold_bn=fold_bn, bias=bias), labels)


def _gram(x: torch.Tensor) -> torch.Tensor:
    """``xᵀx``. On the CPU through numpy, which computes ``a.T @ a`` with BLAS ``syrk`` (one triangle): about 2x
    faster than ``torch.mm`` in float64 there."""
    if x.device.type == "cpu":
        array = x.numpy()
        return torch.from_numpy(array.T @ array)
    return x.T @ x


def _centred_moments(features: torch.Tensor, targets: torch.Tensor, centre: bool) -> dict[str, torch.Tensor]:
    """Column means, the (centred) Gram matrix, the (centred) cross moments and Σ‖x‖², in float64, in chunks."""
    rows, width = features.shape
    device = features.device
    mean_x = torch.zeros(width, dtype=torch.float64, device=device)
    mean_y = torch.zeros(targets.shape[1], dtype=torch.float64, device=device)
    if centre:
        for start in range(0, rows, _CHUNK_ROWS):
            mean_x += features[start : start + _CHUNK_ROWS].double().sum(0)
            mean_y += targets[start : start + _CHUNK_ROWS].double().sum(0)
        mean_x, mean_y = mean_x / rows, mean_y / rows
    gram = torch.zeros(width, width, dtype=torch.float64, device=device)
    cross = torch.zeros(width, targets.shape[1], dtype=torch.float64, device=device)
    for start in range(0, rows, _CHUNK_ROWS):
        x = features[start : start + _CHUNK_ROWS].double() - mean_x
        y = targets[start : start + _CHUNK_ROWS].double() - mean_y
        gram += _gram(x)
        cross += x.T @ y
    # tr(XᵀX) of the uncentred design [x, 1]: Σ‖x‖² = tr(centred Gram) + P‖mean‖², plus P for the ones column.
    trace = gram.trace() + rows * mean_x.square().sum() + (rows if centre else 0)
    return {"mean_x": mean_x, "mean_y": mean_y, "gram": gram, "cross": cross, "trace": trace}


def fit_lp_details(
    features: Any,
    targets: Any,
    *,
    affine: bool = True,
    ridge: float | None = None,
    cond_limit: float = DEFAULT_COND_LIMIT,
) -> tuple[torch.Tensor, dict[str, float]]:
    """:func:`fit_lp` plus ``{"ridge_lambda", "condition_number"}`` of the solve (λ = 0 when no ridge was added)."""
    features = _tensor(features)
    targets = _tensor(targets, device=features.device)
    if targets.dim() == 1:
        targets = targets[:, None]
    if len(features) != len(targets):
        raise ValueError(f"fit_lp: {len(features)} feature rows but {len(targets)} target rows")
    moments = _centred_moments(features, targets, centre=affine)
    gram = moments["gram"]
    eigenvalues = torch.linalg.eigvalsh(gram).clamp_min(0.0)
    top = float(eigenvalues[-1]) if len(eigenvalues) else 0.0
    bottom = float(eigenvalues[0]) if len(eigenvalues) else 0.0
    condition = top / bottom if bottom > 0 else float("inf")
    if ridge is None:
        factor = DEFAULT_RIDGE if condition > cond_limit else 0.0
    else:
        factor = float(ridge)
    lam = factor * float(moments["trace"]) / (features.shape[1] + (1 if affine else 0))
    # Directions at round-off level are dropped from a plain least-squares fit (the minimum-norm solution).
    round_off = top * features.shape[1] * torch.finfo(torch.float64).eps
    slopes = None
    if lam > 0 or bool((eigenvalues > round_off).all()):
        # A regular system: a Cholesky solve, cheaper than the eigenvectors (eigvalsh + Cholesky ≈ 0.6 eigh).
        system = gram + lam * torch.eye(len(gram), dtype=gram.dtype, device=gram.device)
        lower, info = torch.linalg.cholesky_ex(system)
        if int(info) == 0:
            slopes = torch.cholesky_solve(moments["cross"], lower)
    if slopes is None:
        eigenvalues, eigenvectors = torch.linalg.eigh(gram)
        eigenvalues = eigenvalues.clamp_min(0.0)
        if lam > 0:
            inverse = 1.0 / (eigenvalues + lam)
        else:
            inverse = torch.where(
                eigenvalues > round_off, 1.0 / eigenvalues.clamp_min(torch.finfo(torch.float64).tiny), 0.0
            )
        slopes = eigenvectors @ (inverse[:, None] * (eigenvectors.T @ moments["cross"]))
    if affine:
        intercept = moments["mean_y"] - moments["mean_x"] @ slopes
        slopes = torch.cat([slopes, intercept[None, :]])
    return slopes, {"ridge_lambda": lam, "condition_number": condition}


def fit_lp(
    features: Any,
    targets: Any,
    *,
    affine: bool = True,
    ridge: float | None = None,
    cond_limit: float = DEFAULT_COND_LIMIT,
) -> torch.Tensor:
    """Least-squares LP ``features [P, N] -> targets [P, C]`` (methods.md §4), float64, on the features' device.

    Returns ``B`` of shape ``[N+1, C]`` (last row = intercept) when ``affine``, else ``[N, C]``. ``ridge=None``
    adds ``λ = 1e-6·tr(XᵀX)/(N+1)`` only when the centred Gram matrix has condition number above ``cond_limit``
    (or is singular); a number is used as the relative factor instead of 1e-6, always (0 = no ridge).
    """
    return fit_lp_details(features, targets, affine=affine, ridge=ridge, cond_limit=cond_limit)[0]


def lp_predict(coefficients: torch.Tensor, features: Any) -> torch.Tensor:
    """LP logits ``features @ B[:N] + B[N]`` (the intercept row only when ``B`` has ``N+1`` rows), float64."""
    features = _tensor(features)
    width = features.shape[1]
    if coefficients.shape[0] == width + 1:
        slopes, intercept = coefficients[:width], coefficients[width]
    elif coefficients.shape[0] == width:
        slopes, intercept = coefficients, torch.zeros_like(coefficients[0])
    else:
        raise ValueError(f"lp_predict: B has {coefficients.shape[0]} rows, features have {width} columns")
    return affine_logits(slopes.T, intercept, features)


def pruning_table(
    model: nn.Sequential,
    train_xs: Sequence[Any],
    train_logits: Any,
    test_xs: Sequence[Any],
    test_labels: Any,
    train_labels: Any | None = None,
    *,
    affine: bool = True,
    ridge: float | None = None,
    cond_limit: float = DEFAULT_COND_LIMIT,
    test_hs: Sequence[Any] | None = None,
    start_layers: Sequence[int] | None = None,
) -> list[dict[str, float]]:
    """LP and L-map pruning accuracy for every start layer ``l = 1..L`` (methods.md §4, §5.3).

    ``train_xs`` / ``test_xs`` are ``[x^{(0)}, x^{(1)}, ..., x^{(L-1)}]`` (input, then hidden-layer outputs of an
    eval-mode forward; tensors or numpy arrays, images are flattened; ``x^{(0)}`` exactly as the model is fed, i.e.
    float pixels, not raw uint8). The LP for start layer ``l`` is fitted on
    ``train_xs[l-1] -> train_logits`` and scored on the test set (and on the training set when ``train_labels`` is
    given, else ``lp_train_acc`` is NaN). ``test_hs`` (optional, ``[h^{(1)}, ..., h^{(L-1)}]``) adds the §5.3
    ablation ``lmap_field_acc``: the L-map fed with ``h^{(l-1)}`` (for l = 1 the input, identical to ``lmap_acc``).

    Each row: ``start_layer, lp_test_acc, lp_train_acc, lmap_acc, lmap_weights_only_acc, lp_ridge_lambda`` (+
    ``lmap_field_acc``). The work runs on the model's device. For any other module (``netdyn.layerview``) the
    outputs are its layers' pooled outputs, and the L-maps are its linearised tail run on ``test_xs[0]``
    (methods.md §27); ``lmap_field_acc`` is then not measured.
    """
    general = is_general(model)
    layers = depth(model) + 1
    if len(train_xs) != layers or len(test_xs) != layers:
        raise ValueError(
            f"pruning_table: need {layers} layer outputs x^(0)..x^(L-1) per split, "
            f"got {len(train_xs)} (train) and {len(test_xs)} (test)"
        )
    if test_hs is not None and len(test_hs) != layers - 1:
        raise ValueError(f"pruning_table: test_hs must hold h^(1)..h^(L-1) ({layers - 1} arrays), got {len(test_hs)}")
    for name, arrays in (("train_xs", train_xs), ("test_xs", test_xs)):
        if not torch.as_tensor(arrays[0][:1]).is_floating_point():
            raise ValueError(f"pruning_table: {name}[0] must be the model's float input x^(0), not raw integer pixels")
    device = _model_device(model)
    train_logits = _tensor(train_logits, device)
    test_labels = _tensor(test_labels, device)
    starts = list(start_layers or range(1, layers + 1))
    if general:
        test_input = _tensor(test_xs[0], device)
        general_logits = linearised_logits(model, test_input, starts)
        weights_only_logits = linearised_logits(model, test_input, starts, weights_only=True)
    else:
        exact_maps, weight_maps = lmap_all(model), lmap_all(model, fold_bn=False, bias=False)
    rows = []
    for start in starts:
        train_x = _tensor(train_xs[start - 1], device)
        test_x = _tensor(test_xs[start - 1], device)
        if train_x.shape[1] == 0:  # a flattened conv output too large to fit (netdyn.layerview.MAX_FLAT_FEATURES)
            nan = float("nan")
            row = {"start_layer": start, "lp_test_acc": nan, "lp_train_acc": nan, "lp_ridge_lambda": nan}
            row["lp_note"] = "not applicable: too many flattened features for an LP; use lp_features: pooled"
        else:
            coefficients, info = fit_lp_details(
                train_x, train_logits, affine=affine, ridge=ridge, cond_limit=cond_limit
            )
            row = {
                "start_layer": start,
                "lp_test_acc": accuracy(lp_predict(coefficients, test_x), test_labels),
                "lp_train_acc": (
                    accuracy(lp_predict(coefficients, train_x), _tensor(train_labels, device))
                    if train_labels is not None
                    else float("nan")
                ),
                "lp_ridge_lambda": info["ridge_lambda"],
            }
        if general:
            row["lmap_acc"] = accuracy(general_logits[start], test_labels)
            row["lmap_weights_only_acc"] = accuracy(weights_only_logits[start], test_labels)
        else:
            row["lmap_acc"] = accuracy(affine_logits(*exact_maps[start - 1], test_x), test_labels)
            row["lmap_weights_only_acc"] = accuracy(affine_logits(*weight_maps[start - 1], test_x), test_labels)
        row["lp_ridge_lambda"] = row.pop("lp_ridge_lambda")  # the documented column order
        if "lp_note" in row:
            row["lp_note"] = row.pop("lp_note")
        if test_hs is not None and not general:
            field = test_x if start == 1 else _tensor(test_hs[start - 2], device)
            row["lmap_field_acc"] = accuracy(affine_logits(*exact_maps[start - 1], field), test_labels)
        rows.append(row)
    return rows


__all__ = [
    "accuracy",
    "affine_logits",
    "fit_lp",
    "fit_lp_details",
    "lmap",
    "lmap_accuracy",
    "lmap_all",
    "lmap_logits",
    "lp_predict",
    "pruning_table",
]
