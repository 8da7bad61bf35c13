"""The layer view of any module (netdyn/layerview.py, methods.md §1.6): known answers.

(a) an MLP rewritten as a CNN gives the MLP's fields, readouts, RPDs, modes, pruning accuracies and basins; (b) a
one-channel conv layer whose field and readout are computed by hand; (c) an all-linear CNN's L-map is the network,
and its readout is the brute-force Jacobian of the rest of the network summed over positions; the layer finder on
residual blocks, named layers and nonlinearities it cannot see.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from netdyn import data as datasets
from netdyn.activations import layer_outputs
from netdyn.basins import basin_table
from netdyn.layers import blocks, forward_layers
from netdyn.layerview import (
    AnalysedNet,
    LayerViewError,
    NotAffineError,
    capture,
    find_layers,
    linearised_logits,
    readout,
    reduce_field,
    view,
)
from netdyn.models import build
from netdyn.modes import classify
from netdyn.pruning import pruning_table
from netdyn.rpd import lmap_readout, rpd_for_layers
from tests.conftest import write_synthetic_dataset


@pytest.fixture(scope="module")
def trained_mlp(tmp_path_factory):
    """A 784-24-16-10 BatchNorm MLP trained briefly on the synthetic images, and those images."""
    path = write_synthetic_dataset(tmp_path_factory.mktemp("layerview") / "data.h5", n_train=300, n_test=200)
    data = datasets.load(path)
    torch.manual_seed(0)
    model = build({"widths": [24, 16], "batchnorm": True, "activation": "relu", "input_size": 784, "classes": 10})
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):
        index = torch.randint(0, len(data.train_x), (64,))
        loss = nn.functional.cross_entropy(model(data.train_x[index]), data.train_y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), data


def as_cnn(mlp: nn.Sequential) -> AnalysedNet:
    """The same network written with convolutions: a first Conv2d whose kernel covers the whole 28x28 image, then 1x1
    convs, BatchNorm2d where the MLP has BatchNorm1d."""
    modules: list[nn.Module] = []
    channels, kernel = 1, 28
    for block in blocks(mlp):
        linear = block.linear
        conv = nn.Conv2d(channels, linear.out_features, kernel)
        with torch.no_grad():
            conv.weight.copy_(linear.weight.view(linear.out_features, channels, kernel, kernel))
            conv.bias.copy_(linear.bias)
        modules.append(conv)
        if block.bn is not None:
            norm = nn.BatchNorm2d(linear.out_features)
            norm.load_state_dict(block.bn.state_dict())
            modules.append(norm)
        if block.act is not None:
            modules.append(type(block.act)())
        channels, kernel = linear.out_features, 1
    modules.append(nn.Flatten())
    return AnalysedNet(nn.Sequential(*modules), (1, 28, 28)).eval()


def test_an_mlp_written_as_a_cnn_has_the_mlps_fields_and_readouts(trained_mlp):
    mlp, data = trained_mlp
    cnn = as_cnn(mlp)
    found = view(cnn)
    assert [(layer.kind, layer.units, layer.norm is not None) for layer in found.layers] == [
        ("conv", 24, True),
        ("conv", 16, True),
    ]
    x = data.train_x[:200]
    hs, xs, logits = forward_layers(mlp, x)
    cnn_hs, cnn_xs, cnn_logits = forward_layers(cnn, x)
    for ours, theirs in zip([*hs, *xs, logits], [*cnn_hs, *cnn_xs, cnn_logits], strict=True):
        torch.testing.assert_close(theirs, ours, rtol=1e-5, atol=1e-5)
    for layer in (1, 2):
        torch.testing.assert_close(readout(cnn, layer, x), lmap_readout(mlp, layer), rtol=1e-9, atol=1e-12)


def test_an_mlp_written_as_a_cnn_has_the_mlps_rpd_modes_pruning_and_basins(trained_mlp):
    mlp, data = trained_mlp
    cnn = as_cnn(mlp)
    x, y = data.train_x[:200], data.train_y[:200]
    hs, _, _ = forward_layers(mlp, x)
    cnn_hs, _, _ = forward_layers(cnn, x)
    same_fields = zip(rpd_for_layers(mlp, hs, y), rpd_for_layers(cnn, hs, y), strict=True)
    own_fields = rpd_for_layers(cnn, cnn_hs, y)
    for (ours, theirs), own in zip(same_fields, own_fields, strict=True):
        np.testing.assert_array_equal(theirs["density"], ours["density"])  # the same signs: the same ranks
        assert classify(theirs["neurons"])["opm_fraction"] == classify(ours["neurons"])["opm_fraction"]
        # its own fields differ by rounding only: a near-tie may swap two of 200 ranks
        np.testing.assert_allclose(own["density"], ours["density"], atol=0.05)
        assert abs(own["G"] - ours["G"]) < 0.01

    x_test, y_test = data.test_x, data.test_y
    train_xs, train_logits = layer_outputs(mlp, x)
    test_xs, _ = layer_outputs(mlp, x_test)
    cnn_train_xs, cnn_train_logits = layer_outputs(cnn, x)
    cnn_test_xs, _ = layer_outputs(cnn, x_test)
    ours = pruning_table(mlp, train_xs, train_logits, test_xs, y_test, y)
    theirs = pruning_table(cnn, cnn_train_xs, cnn_train_logits, cnn_test_xs, y_test, y)
    one_sample = 1 / len(y_test) + 1e-12
    for a, b in zip(ours, theirs, strict=True):
        for key in ("lp_test_acc", "lmap_acc", "lmap_weights_only_acc"):
            assert abs(a[key] - b[key]) <= one_sample, (a["start_layer"], key, a[key], b[key])
    assert ours[-1]["lmap_acc"] > 0.5  # the output layer alone: the trained network itself

    settings = {
        "input_amplitudes": np.logspace(-2, 1, 7),
        "weight_amplitudes": np.logspace(-2, 0.5, 6),
        "repeats": 2,
        "draws": 2,
        "seed": 3,
    }
    mlp_rows, mlp_sizes = basin_table(mlp, x, y, **settings)
    cnn_rows, cnn_sizes = basin_table(cnn, x, y, **settings)
    for a, b in zip(mlp_rows, cnn_rows, strict=True):  # the same noise draws: accuracies differ by a near-tie at most
        assert (a["space"], a["amplitude"]) == (b["space"], b["amplitude"])
        assert abs(a["accuracy"] - b["accuracy"]) <= 2 / len(y) + 1e-12
    assert {k: v[1] for k, v in mlp_sizes.items()} == {k: v[1] for k, v in cnn_sizes.items()}


def one_channel(weight, bias, head, pool=False) -> AnalysedNet:
    conv = nn.Conv2d(1, 1, 2)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(weight, dtype=torch.float32).view(1, 1, 2, 2))
        conv.bias.fill_(bias)
    linear = nn.Linear(len(head[0]), len(head))
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(head))
        linear.bias.zero_()
    modules = [conv, nn.ReLU(), *([nn.MaxPool2d(2)] if pool else []), nn.Flatten(), linear]
    return AnalysedNet(nn.Sequential(*modules), (1, 3, 3))


@pytest.mark.parametrize(("how", "expected"), [("mean", 47.5), ("max", 67.5), ("center", 67.5)])
def test_a_one_channel_conv_field_computed_by_hand(how, expected):
    model = one_channel([[1, 2], [3, 4]], 0.5, [[1, 0, 0, -1], [0.5, 0.5, 0.5, 0.5]])
    model.conv_field = how
    image = torch.arange(9, dtype=torch.float32).view(1, 9)
    # positions (0,0): 0+2+9+16, (0,1): 1+4+12+20, (1,0): 3+8+18+28, (1,1): 4+10+21+32; each + 0.5
    hs, xs, _ = capture(model, image)
    assert hs[0].tolist() == [[expected]]
    assert xs[0].tolist() == [[47.5]]  # outputs are pooled by their mean; ReLU passes these positive fields
    assert reduce_field(torch.tensor([[[[27.5, 37.5], [57.5, 67.5]]]]), how).item() == expected
    _, flat, _ = capture(model, image, outputs="flattened")
    assert flat[0].tolist() == [[27.5, 37.5, 57.5, 67.5]]  # the whole output, positions in row-major order


def test_a_one_channel_readout_computed_by_hand():
    # logits = W vec(h): d logit_k / d h_p = W[k, p]; summed over the four positions
    model = one_channel([[1, 2], [3, 4]], 0.5, [[1, 0, 0, -1], [0.5, 0.5, 0.5, 0.5]])
    assert readout(model, 1, torch.rand(2, 9)).tolist() == [[0.0, 2.0]]
    # max pooling's stand-in averages the 4 positions: d logit_k / d h_p = w_k / 4, summed: w_k
    pooled = one_channel([[1, 2], [3, 4]], 0.5, [[3.0], [-1.0]], pool=True)
    assert readout(pooled, 1, torch.rand(2, 9)).tolist() == [[3.0, -1.0]]


def all_linear_cnn() -> AnalysedNet:
    torch.manual_seed(1)
    norm = nn.BatchNorm2d(4)
    norm.running_mean.uniform_(-1, 1)
    norm.running_var.uniform_(0.5, 2)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        norm,
        nn.Identity(),
        nn.AvgPool2d(2),
        nn.Conv2d(4, 6, 3),
        nn.Identity(),
        nn.Flatten(),
        nn.Linear(6 * 12 * 12, 10),
    )
    return AnalysedNet(net, (1, 28, 28)).eval()


def test_an_all_linear_cnns_lmap_is_the_network_and_its_readout_the_summed_jacobian():
    model = all_linear_cnn()
    x = torch.rand(50, 784)
    with torch.no_grad():
        logits = model(x)
    for start, lmap in linearised_logits(model, x, [1, 2, 3]).items():
        torch.testing.assert_close(lmap, logits, rtol=1e-5, atol=1e-5, msg=f"start layer {start}")
    net = model.net.double()
    rest = net[3:]  # everything after the first layer's activation
    field = torch.rand(1, 4, 28, 28, dtype=torch.float64)
    jacobian = torch.autograd.functional.jacobian(lambda h: rest(h)[0], field)  # [10, 1, 4, 28, 28]
    expected = jacobian[:, 0].sum(dim=(2, 3)).T  # [channels, classes]
    torch.testing.assert_close(readout(model, 1, x), expected, rtol=1e-10, atol=1e-12)


def test_a_nonlinearity_the_hooks_cannot_see_is_refused():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.first, self.act, self.second, self.third = nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 5), nn.Linear(5, 3)

        def forward(self, x):
            return self.third(torch.relu(self.second(self.act(self.first(x)))))

    model = AnalysedNet(Functional())
    assert [layer.name for layer in view(model).layers] == ["act"]
    with pytest.raises(NotAffineError, match="functional nonlinearity"):
        readout(model, 1, torch.randn(4, 6))


def test_residual_blocks_named_layers_and_a_module_without_layers():
    resnet = torchvision.models.resnet18(num_classes=10)
    resnet.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    model = AnalysedNet(resnet, (1, 28, 28))
    found = view(model)
    assert [layer.name for layer in found.layers][:3] == ["relu", "layer1.0.relu", "layer1.1.relu"]
    assert len(found.layers) == 9 and all(layer.kind == "conv" for layer in found.layers)
    skipped = dict(found.skipped)
    assert "layer1.0.relu#1" in skipped and "Linear or Conv" in skipped["layer1.0.relu#1"]  # after the residual sum
    named = AnalysedNet(resnet, (1, 28, 28), layer_names=["layer4.1.relu", "relu"])
    assert [layer.name for layer in view(named).layers] == ["layer4.1.relu", "relu"]
    with pytest.raises(LayerViewError, match="layer1.0.relu#1.*Linear or Conv"):
        view(AnalysedNet(resnet, (1, 28, 28), layer_names=["layer1.0.relu#1"]))
    with pytest.raises(LayerViewError, match="no analysable layer"):
        find_layers(nn.Sequential(nn.Linear(4, 3)), torch.randn(2, 4))
