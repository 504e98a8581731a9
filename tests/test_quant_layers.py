"""The quantized linear layers on their own: FP8 e4m3fn checkpoints on an fnuz platform (ROCm gfx942: the
bytes reinterpreted, the scales doubled, -0 cleared), shard loading, missing tensors, and wrong inputs."""

from __future__ import annotations

import pytest
import torch

from tessera.discovery import discover
from tessera.kernel_registry import build_registry
from tessera.platform import Capabilities
from tessera.pluggable_layers.context import KernelContext
from tessera.pluggable_layers.errors import ConfigError
from tessera.pluggable_layers.linear import Linear
from tessera.pluggable_layers.quant import CheckpointQuant, Fp8CheckpointLinear, WNA16Linear, make_linear
from tessera.pluggable_layers.registry import PlatformFacts


def context(fp8_dtype=None, scheme=None):
    facts = PlatformFacts("cpu", Capabilities(fp8_dtype=fp8_dtype))
    return KernelContext(build_registry(discover()), facts, torch.float32, torch.device("cpu"),
                         checkpoint_quant=scheme)  # fmt: skip


def fp8_shard(n, k, per_channel, g):
    w = torch.randn(n, k, generator=g)
    scale = (w.abs().amax(1, keepdim=True) if per_channel else w.abs().amax()) / 448.0
    return (w / scale).to(torch.float8_e4m3fn), scale.float()


@pytest.mark.parametrize("fp8", ["float8_e4m3fn", "float8_e4m3fnuz"])
def test_fp8_checkpoint_layer_keeps_the_stored_values(fresh_discovery, fp8):
    g = torch.Generator().manual_seed(0)
    layer = Fp8CheckpointLinear(32, [16, 8], False, context(fp8), "qkv", shard_names=("q", "k"))
    shards = {"q": fp8_shard(16, 32, True, g), "k": fp8_shard(8, 32, False, g)}
    shards["k"][0][0, 0] = -0.0  # the byte 0x80: -0 in e4m3fn, NaN in fnuz
    for name, (w, s) in shards.items():
        layer.load_shard("weight", w, name)
        layer.load_shard("weight_scale", s, name)
        layer.load_shard("input_scale", torch.ones(()), name)  # static activation scales are not used
    layer.finish_loading()
    assert str(layer.weight.dtype) == f"torch.{fp8}"
    real = torch.cat(
        [w.float() * s.reshape(-1, 1) if s.numel() > 1 else w.float() * s for w, s in shards.values()]
    )
    ours = layer.weight.float() * layer.weight_scale[:, None]
    assert not torch.isnan(ours).any() and torch.equal(ours, real)
    if fp8.endswith("fnuz"):
        assert torch.equal(layer.weight_scale[:16], shards["q"][1].reshape(-1) * 2)
    x = torch.randn(3, 32, generator=g)
    rel = float((layer(x) - x @ real.T).norm() / (x @ real.T).norm())
    assert rel < 6e-2


def test_missing_and_unexpected_tensors_are_named(fresh_discovery):
    scheme = CheckpointQuant("wna16", "gptq", 32)
    layer = make_linear(
        64, [16, 16], False, context(scheme=scheme), "mlp.gate_up", shard_names=("gate", "up")
    )
    assert isinstance(layer, WNA16Linear)
    layer.load_shard("qweight", torch.zeros(8, 16, dtype=torch.int32), "gate")
    with pytest.raises(ConfigError, match=r"lacks qweight\[up\], qzeros\[gate\]"):
        layer.finish_loading()
    with pytest.raises(ConfigError, match="has no 'weight' tensor here"):
        layer.load_shard("weight", torch.zeros(16, 64), "up")
    with pytest.raises(ConfigError, match="quantizes a 16-bit checkpoint on load"):
        make_linear(64, 16, False, context(scheme=scheme), "o", quantization="fp8")
    with pytest.raises(ConfigError, match="group size 48 does not divide"):
        make_linear(64, 16, False, context(scheme=CheckpointQuant("wna16", "awq", 48)), "o")
    dense = Linear(64, 16, False, context(), "o")
    with pytest.raises(ConfigError, match="is quantized, but this layer loads unquantized weights"):
        dense.load_shard("qweight", torch.zeros(8, 16, dtype=torch.int32))
