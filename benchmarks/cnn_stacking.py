"""Would stacking pay for CNNs? One training step (forward, backward, Adam) of K CNNs of presets/cnn.yaml's shape
trained one after another, against the same K nets as one module: grouped convolutions (``groups=K``; BatchNorm and
pooling are per channel already, so K members stay independent) and a batched head (``baddbmm``). This is how
``netdyn.stacked`` stacks MLPs; the question is whether the conv layers gain what the MLPs' matmuls do.

Measured 5 December 2026 (three runs, 20 steps each, on a quiet machine: load average 0), AMD EPYC (2 vCPUs shared
with other tenants), torch 2.14.1 CPU, one thread as a workflow job has, K = 3 (the preset's seeds), batch 128.
Result: stacked / separate step time **0.92-1.77, median 1.21** over depths 2/4/8 and widths 8/16 (above 1 in 16 of
18 cells): stacking is slower. The convolutions dominate a step; one conv layer alone (printed after the table) is
1.25-1.9x slower grouped than as K convolutions at 16 channels a member, and about as fast at 8. So CNN runs train
alone (docs/config.md). Not measured on a GPU. The tables are in benchmarks/RESULTS.md "CNN stacking".
Run: ``python -m benchmarks.cnn_stacking [--steps N]``.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from netdyn.config import CNN_DEFAULTS, conv_plan
from netdyn.models import build_cnn


class GroupedCNN(nn.Module):
    """K CNNs of ``spec`` (BatchNorm, ReLU, a one-layer head) as one module: member k owns channels k*w..(k+1)*w of
    every conv layer and slice k of the head's batched weights."""

    def __init__(self, spec: dict, k: int) -> None:
        super().__init__()
        self.k = k
        layers: list[nn.Module] = []
        in_channels, kernel = int(spec["input_shape"][0]), int(spec["kernel"])
        for width, _, pooled in conv_plan(spec):
            conv = nn.Conv2d(k * in_channels, k * width, kernel, padding=kernel // 2, groups=k)
            layers += [conv, nn.BatchNorm2d(k * width)]
            layers += [nn.ReLU()] + ([nn.MaxPool2d(2)] if pooled else [])
            in_channels = width
        self.body = nn.Sequential(*layers)
        width, side, _ = conv_plan(spec)[-1]
        features, self.hidden = width * side * side, int(spec["head_widths"][0])
        self.w1 = nn.Parameter(torch.randn(k, features, self.hidden) * features**-0.5)
        self.b1 = nn.Parameter(torch.zeros(k, 1, self.hidden))
        self.norm = nn.BatchNorm1d(k * self.hidden)
        self.w2 = nn.Parameter(torch.randn(k, self.hidden, 10) * self.hidden**-0.5)
        self.b2 = nn.Parameter(torch.zeros(k, 1, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> [K, B, 10]
        n = len(x)
        h = self.body(x.repeat(1, self.k, 1, 1)).reshape(n, self.k, -1).transpose(0, 1)
        h = torch.baddbmm(self.b1, h, self.w1).transpose(0, 1).reshape(n, -1)
        h = torch.relu(self.norm(h)).reshape(n, self.k, self.hidden).transpose(0, 1)
        return torch.baddbmm(self.b2, h, self.w2)

    @torch.no_grad()
    def copy_members(self, members: list[nn.Module]) -> GroupedCNN:
        """Load the weights of ``members`` (``build_cnn`` nets of the same spec), to check the two compute alike."""
        mine = [m for m in self.body if isinstance(m, nn.Conv2d | nn.BatchNorm2d)]
        theirs = [[m for m in member.modules() if isinstance(m, nn.Conv2d | nn.BatchNorm2d)] for member in members]
        for index, module in enumerate(mine):
            module.weight.copy_(torch.cat([layers[index].weight for layers in theirs]))
            module.bias.copy_(torch.cat([layers[index].bias for layers in theirs]))
        heads = [[m for m in member.modules() if isinstance(m, nn.Linear | nn.BatchNorm1d)] for member in members]
        for k, (first, norm, last) in enumerate(heads):
            self.w1[k], self.b1[k, 0], self.w2[k], self.b2[k, 0] = first.weight.T, first.bias, last.weight.T, last.bias
            self.norm.weight[k * self.hidden : (k + 1) * self.hidden] = norm.weight
            self.norm.bias[k * self.hidden : (k + 1) * self.hidden] = norm.bias
        return self


def step_time(models: list[nn.Module], stacked: bool, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    optimizers = [torch.optim.Adam(model.parameters(), lr=1e-3) for model in models]
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        for model, optimizer in zip(models, optimizers, strict=True):
            optimizer.zero_grad()
            out = model(x)
            loss = loss_fn(out.flatten(0, 1), y.repeat(out.shape[0])) if stacked else loss_fn(out, y)
            loss.backward()
            optimizer.step()

    for _ in range(3):  # warm-up: allocator, oneDNN primitive caches
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def conv_layer_times(members: int, width: int, batch: int, steps: int) -> tuple[float, float]:
    """Forward and backward of one 3 x 3 conv layer on 28 x 28 inputs: ``members`` convolutions of ``width``
    channels one after another, and the same as one grouped convolution (seconds per step)."""
    separate = [nn.Conv2d(width, width, 3, padding=1) for _ in range(members)]
    inputs = [torch.randn(batch, width, 28, 28, requires_grad=True) for _ in range(members)]
    grouped = nn.Conv2d(members * width, members * width, 3, padding=1, groups=members)
    stacked_input = torch.randn(batch, members * width, 28, 28, requires_grad=True)

    def timed(step) -> float:
        for _ in range(3):
            step()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        return (time.perf_counter() - start) / steps

    def one_after_another() -> None:
        for conv, h in zip(separate, inputs, strict=True):
            conv(h).sum().backward()

    return timed(one_after_another), timed(lambda: grouped(stacked_input).sum().backward())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--members", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
    print("| depth | width | separate (ms/step, K nets) | stacked (ms/step) | stacked / separate |")
    print("|---|---|---|---|---|")
    for depth in (2, 4, 8):
        for width in (8, 16):
            spec = {**CNN_DEFAULTS, "depth": depth, "width": width, "batchnorm": True}
            separate = [build_cnn(spec) for _ in range(args.members)]
            grouped = GroupedCNN(spec, args.members).copy_members(separate)
            expected = torch.stack([member(x) for member in separate])
            torch.testing.assert_close(grouped(x), expected, rtol=1e-4, atol=1e-4)  # the same K nets
            alone = step_time(separate, False, x, y, args.steps)
            together = step_time([grouped], True, x, y, args.steps)
            print(f"| {depth} | {width} | {1e3 * alone:.1f} | {1e3 * together:.1f} | {together / alone:.2f} |")
    for width in (8, 16):
        alone, together = conv_layer_times(args.members, width, 128, args.steps)
        print(f"one conv layer, {width} channels a member, forward and backward: {1e3 * alone:.0f} ms as ", end="")
        print(f"{args.members} convolutions, {1e3 * together:.0f} ms grouped ({together / alone:.2f}x)")


if __name__ == "__main__":
    main()
