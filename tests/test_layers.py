"""Layer modules on the cpu platform: weight loaders, fp8, rotary scaling, attention, MoE, Mamba2 state."""

from __future__ import annotations

import pytest
import torch

from tessera.discovery import discover, select_platform
from tessera.kernel_registry import build_registry, platform_facts
from tessera.platform import Capabilities
from tessera.pluggable_layers.attention import Attention
from tessera.pluggable_layers.batch import AttentionMetadata, MambaMetadata
from tessera.pluggable_layers.context import KernelContext
from tessera.pluggable_layers.errors import ConfigError
from tessera.pluggable_layers.linear import Linear
from tessera.pluggable_layers.mamba import Mamba2Mixer, Mamba2Shape
from tessera.pluggable_layers.moe import FusedMoE
from tessera.pluggable_layers.registry import PlatformFacts
from tessera.pluggable_layers.rotary import RotaryEmbedding, inverse_frequencies


@pytest.fixture
def ctx(fresh_discovery):
    discovery = discover()
    return KernelContext(
        build_registry(discovery),
        platform_facts(select_platform("cpu", discovery)),
        torch.float32,
        torch.device("cpu"),
    )


def test_fused_qkv_loader_and_forward(ctx):
    layer = Linear(8, [4, 2, 2], True, ctx, "attn.qkv", shard_names=("q", "k", "v"))
    q, k, v = torch.randn(4, 8), torch.randn(2, 8), torch.randn(2, 8)
    for name, w in (("q", q), ("k", k), ("v", v)):
        layer.load_shard("weight", w, name)
    layer.load_shard("bias", torch.arange(2.0), "k")
    x = torch.randn(3, 8)
    expected = x @ torch.cat([q, k, v]).T + torch.tensor([0, 0, 0, 0, 0, 1, 0, 0.0])
    torch.testing.assert_close(layer(x), expected)
    with pytest.raises(ConfigError, match="checkpoint shape"):
        layer.load_shard("weight", torch.randn(3, 8), "q")
    with pytest.raises(ConfigError, match="unknown shard 'o'"):
        layer.load_shard("weight", q, "o")
    assert [c.op for c in ctx.choices] == ["linear"] and ctx.choices[0].layer == "attn.qkv"


def test_fp8_linear_quantizes_on_load(ctx):
    with pytest.raises(ConfigError, match="needs a platform with an fp8 dtype; cpu has none"):
        Linear(8, 4, False, ctx, "mlp", quantization="fp8")
    fp8_ctx = KernelContext(
        ctx.registry,
        PlatformFacts("cpu", Capabilities(fp8_dtype="float8_e4m3fn")),
        torch.float32,
        torch.device("cpu"),
    )
    layer = Linear(64, 32, False, fp8_ctx, "mlp.down", quantization="fp8")
    w = torch.randn(32, 64)
    layer.load_shard("weight", w)
    layer.finish_loading()
    assert layer.weight.dtype == torch.float8_e4m3fn and layer.weight_scale.shape == (32,)
    x = torch.randn(5, 64)
    rel = (layer(x) - x @ w.T).norm() / (x @ w.T).norm()
    assert rel < 0.06 and fp8_ctx.choices[-1].op == "linear_fp8"


def test_llama3_rope_scaling_matches_transformers():
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192}  # fmt: skip
    config = LlamaConfig(hidden_size=512, num_attention_heads=4, rope_theta=500000.0, rope_scaling=scaling)
    expected, _ = ROPE_INIT_FUNCTIONS["llama3"](config, "cpu")
    torch.testing.assert_close(inverse_frequencies(128, 500000.0, scaling).float(), expected.float())
    with pytest.raises(ConfigError, match="yarn"):
        inverse_frequencies(64, 1e4, {"rope_type": "yarn"})


def test_rotary_layer_partial(ctx):
    rope = RotaryEmbedding(16, 8, 32, 10000.0, True, ctx, "rope")
    q, k = torch.randn(3, 2, 16), torch.randn(3, 1, 16)
    q2, k2 = rope(torch.tensor([0, 5, 31]), q, k)
    torch.testing.assert_close(q2[0], q[0])  # position 0 is the identity
    torch.testing.assert_close(q2[:, :, 8:], q[:, :, 8:])


def test_attention_layer_prefill_then_decode(ctx):
    layer = Attention(4, 2, 8, 8**-0.5, ctx, "attn")
    with pytest.raises(ConfigError, match="no KV cache"):
        layer(torch.randn(1, 32), torch.randn(1, 16), torch.randn(1, 16), None)
    layer.kv_cache = (torch.zeros(4, 4, 2, 8), torch.zeros(4, 4, 2, 8))
    q, k, v = torch.randn(6, 32), torch.randn(6, 16), torch.randn(6, 16)
    table = torch.tensor([[2, 0]], dtype=torch.int32)

    def meta(start, length):
        slots = torch.tensor([int(table[0, p // 4]) * 4 + p % 4 for p in range(start, start + length)])
        return AttentionMetadata(
            slots,
            torch.tensor([0, length], dtype=torch.int32),
            torch.tensor([start + length], dtype=torch.int32),
            table,
        )

    full = layer(q, k, v, meta(0, 6))
    layer.kv_cache = (torch.zeros(4, 4, 2, 8), torch.zeros(4, 4, 2, 8))
    first = layer(q[:5], k[:5], v[:5], meta(0, 5))
    last = layer(q[5:], k[5:], v[5:], meta(5, 1))
    torch.testing.assert_close(torch.cat([first, last]), full)
    dense = torch.nn.functional.scaled_dot_product_attention(
        q.view(6, 4, 8).transpose(0, 1),
        k.view(6, 2, 8).transpose(0, 1),
        v.view(6, 2, 8).transpose(0, 1),
        is_causal=True,
        enable_gqa=True,
    ).transpose(0, 1)
    torch.testing.assert_close(full, dense.reshape(6, 32))


def test_moe_layer_loads_hf_experts(ctx):
    moe = FusedMoE(4, 2, 8, 6, ctx, "mlp.experts")
    experts = [
        {s: torch.randn(*shape) for s, shape in (("gate", (6, 8)), ("up", (6, 8)), ("down", (8, 6)))}
        for _ in range(4)
    ]
    for e, tensors in enumerate(experts):
        for shard, t in tensors.items():
            moe.load_expert(e, shard, t)
    x, logits = torch.randn(5, 8), torch.randn(5, 4)
    out = moe(x, logits)
    probs = torch.softmax(logits, -1)
    w, ids = probs.topk(2, -1)
    w = w / w.sum(-1, keepdim=True)
    expected = torch.zeros_like(x)
    for t in range(5):
        for j in range(2):
            e = experts[int(ids[t, j])]
            expected[t] += w[t, j] * (
                e["down"] @ (torch.nn.functional.silu(e["gate"] @ x[t]) * (e["up"] @ x[t]))
            )
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="no expert 9"):
        moe.load_expert(9, "gate", torch.randn(6, 8))


def test_mamba_mixer_prefill_then_decode_equals_one_prefill(ctx):
    torch.manual_seed(0)
    shape = Mamba2Shape(
        hidden_size=16,
        num_heads=4,
        head_dim=4,
        n_groups=2,
        state_size=8,
        conv_kernel=4,
        chunk_size=4,
        eps=1e-5,
    )
    mixer = Mamba2Mixer(shape, ctx, "mixer")
    for p in mixer.parameters():
        p.data.normal_(0, 0.3)
    mixer.A_log.data = torch.rand(4)

    def fresh_state():
        return (torch.zeros(2, shape.conv_dim, 3), torch.zeros(2, 4, 4, 8))

    x = torch.randn(7, 16)
    mixer.state = fresh_state()
    full = mixer(
        x,
        MambaMetadata(
            torch.tensor([0, 7], dtype=torch.int32),
            torch.tensor([1], dtype=torch.int32),
            torch.tensor([False]),
            0,
        ),
    )
    mixer.state = fresh_state()
    one = torch.tensor([1], dtype=torch.int32)
    part = mixer(x[:6], MambaMetadata(torch.tensor([0, 6], dtype=torch.int32), one, torch.tensor([False]), 0))
    step = mixer(x[6:], MambaMetadata(torch.tensor([0, 1], dtype=torch.int32), one, torch.tensor([True]), 1))
    torch.testing.assert_close(torch.cat([part, step]), full, rtol=1e-4, atol=1e-5)
