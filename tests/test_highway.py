"""Highway layers (Srivastava et al. 2015) and the residual block beside them in seqgen.nets.MLP."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seqgen.errors import ConfigError
from seqgen.nets import MLP, Highway, Residual


def test_a_closed_gate_carries_the_input_and_an_open_one_transforms_it():
    torch.manual_seed(0)
    x = torch.randn(8, 16)
    carry = Highway(16, gate_bias=-30.0)  # T = sigmoid(-30 + ...) ~ 0: y = x
    assert torch.allclose(carry(x), x, atol=1e-6)
    transform = Highway(16, gate_bias=30.0)  # T ~ 1: y = H(x)
    assert torch.allclose(transform(x), torch.relu(transform.transform(x)), atol=1e-6)
    assert torch.all(Highway(16).gate.bias == -2.0)  # the paper's negative start: mostly carry


def test_the_highway_output_is_the_gated_mix():
    torch.manual_seed(1)
    layer, x = Highway(6, activation="tanh", gate_bias=-1.0), torch.randn(4, 6)
    t = torch.sigmoid(layer.gate(x))
    assert torch.allclose(layer(x), torch.tanh(layer.transform(x)) * t + x * (1 - t))
    res = Residual(6)
    assert torch.allclose(res(x), x + torch.relu(res.linear(x)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradients_reach_the_first_layer_of_a_50_layer_highway_net_but_not_of_a_plain_one(seed):
    """At initialisation, on the same batch: the first layer's gradient of a 50-layer plain ReLU
    net has vanished, the highway net's is within two orders of its output layer's. Ratio first /
    output layer over seeds 0-9 at 1 and 2 threads: plain at most 1.0e-18 (threshold 1e-8), highway
    at least 1.5e-2 (threshold 1e-3)."""
    norms = {}
    for block in ("plain", "highway"):
        torch.manual_seed(seed)
        net = MLP(64, 10, hidden_sizes=[50] * 50, block=block)
        x, y = torch.randn(32, 64), torch.randint(0, 10, (32,))
        F.cross_entropy(net(x), y).backward()
        first, last = net.features[1].weight.grad.norm(), net.head.weight.grad.norm()
        norms[block] = float(first / last)
    assert norms["plain"] < 1e-8 and norms["highway"] > 1e-3, norms


def test_blocks_keep_one_width_and_name_their_head():
    with pytest.raises(ConfigError, match="hidden_sizes must all be equal"):
        MLP(64, 10, hidden_sizes=[50, 40], block="highway")
    with pytest.raises(ConfigError, match="available: plain, highway, residual"):
        MLP(64, 10, block="gated")
    net = MLP(64, 10, hidden_sizes=[32] * 4, block="highway")
    assert sum(isinstance(m, Highway) for m in net.modules()) == 3 and net.head_names == ("head",)
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 10)
