"""What the cuda plugin's kernels declare they cannot take, checked without a GPU."""

from __future__ import annotations

from tessera.platform import Capabilities
from tessera.pluggable_layers.registry import KernelQuery, PlatformFacts


def test_cuda_fp8_gemm_declines_shapes_cublaslt_refuses():
    from tessera_cuda.kernels.linear_fp8 import supports

    h200 = PlatformFacts("cuda", Capabilities(fp8_dtype="float8_e4m3fn"), arch="sm_90")
    fits = {"fp8_dtype": "float8_e4m3fn", "in_features": 4096, "out_features": 6144}
    assert supports(KernelQuery("linear_fp8", h200, "bfloat16", fits)) is None
    for k, n in ((128, 2), (639, 96), (18, 17)):
        facts = {**fits, "in_features": k, "out_features": n}
        reason = supports(KernelQuery("linear_fp8", h200, "bfloat16", facts))
        assert reason and "multiples of 16" in reason and f"K ({k})" in reason


def test_fp8_linear_layer_states_its_shape_to_the_registry(fresh_discovery):
    import torch

    from tessera.discovery import get_discovery, select_platform
    from tessera.kernel_registry import get_registry, platform_facts
    from tessera.pluggable_layers.context import KernelContext
    from tessera.pluggable_layers.linear import Linear

    platform = select_platform("cpu", get_discovery())
    base = platform_facts(platform)
    facts = PlatformFacts(
        base.name, base.capabilities.model_copy(update={"fp8_dtype": "float8_e4m3fn"}), arch=base.arch
    )
    ctx = KernelContext(get_registry(), facts, torch.float32, torch.device("cpu"))
    Linear(40, [24, 8], False, ctx, "proj", quantization="fp8")
    (key,) = [k for k in ctx._bound if k[0] == "linear_fp8"]
    assert ("in_features", 40) in key[2] and ("out_features", 32) in key[2]
