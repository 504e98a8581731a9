"""Level (c) with graphs: each layer's decode-shaped forward captured once and replayed.

The engine replays decode steps from captured graphs, so a layer whose kernels read host state at
capture time, allocate outside the graph pool, or mutate their inputs in a way a replay repeats
would pass the eager layer cases and still break the engine. Here the inputs are built on the
device *before* capture (no host copy inside the captured region), the layer runs once eagerly as
warm-up (compilation must not happen during capture), the mutable state (KV cache, Mamba state) is
restored, the forward is captured, the state and inputs are written again, and the graph is
replayed. The replayed output must match the same layer on reference kernels, run eagerly on the
same inputs and state, within the matmul budget.
"""

from __future__ import annotations

import torch

from tessera.conformance.graph_replay import capture_and_replay
from tessera.pluggable_layers.batch import AttentionMetadata, MambaMetadata
from tessera.pluggable_layers.kv_layout import from_token_major, to_token_major

DECODE_ROWS = 4


def decode_inputs(kind: str, module, device, g: torch.Generator, dtype: torch.dtype) -> dict:
    """Device tensors of one decode step for the layer ``kind`` (state tensors under ``state``)."""
    rows = DECODE_ROWS

    def rand(*shape, to=dtype):
        return torch.randn(*shape, generator=g).to(device, to)

    if kind == "linear":
        return {"x": rand(rows, 256)}
    if kind == "moe":
        return {"x": rand(rows, 128), "logits": rand(rows, 16, to=torch.float32)}
    if kind == "mamba2":
        s = module.shape
        state = (
            rand(rows, s.conv_dim, 3),
            rand(rows, s.num_heads, s.head_dim, s.state_size, to=torch.float32),
        )
        meta = MambaMetadata(torch.arange(rows + 1, dtype=torch.int32, device=device),
                             torch.arange(rows, dtype=torch.int32, device=device),
                             torch.ones(rows, dtype=torch.bool, device=device), rows)  # fmt: skip
        return {"x": rand(rows, 128), "state": state, "meta": meta}
    cache = tuple(from_token_major(rand(8, 16, 2, 64), module.kv_layout) for _ in range(2))
    # four sequences of contexts 34, 5, 17 and 1 in their own blocks, each writing its one new token
    tables = torch.tensor([[3, 1, 0], [5, 0, 0], [6, 4, 0], [7, 0, 0]], dtype=torch.int32, device=device)
    lens = [34, 5, 17, 1]
    slots = [int(tables[i, (n - 1) // 16]) * 16 + (n - 1) % 16 for i, n in enumerate(lens)]
    meta = AttentionMetadata(torch.tensor(slots, device=device), torch.arange(rows + 1, dtype=torch.int32, device=device),
                             torch.tensor(lens, dtype=torch.int32, device=device), tables)  # fmt: skip
    return {"q": rand(rows, 512), "k": rand(rows, 128), "v": rand(rows, 128), "state": cache, "meta": meta}


def restore(module, inputs: dict, saved: tuple | None) -> None:
    """Bind the layer's state tensors (the same storage every time) with the saved values."""
    if saved is None:
        return
    for target, value in zip(inputs["state"], saved, strict=True):
        target.copy_(value)
    if hasattr(module, "kv_cache"):
        module.kv_cache = inputs["state"]
    else:
        module.state = inputs["state"]


def forward(kind: str, module, inputs: dict) -> torch.Tensor:
    if kind == "linear":
        return module(inputs["x"])
    if kind == "moe":
        return module(inputs["x"], inputs["logits"])
    if kind == "mamba2":
        return module(inputs["x"], inputs["meta"])
    return module(inputs["q"], inputs["k"], inputs["v"], inputs["meta"])


def replayed(platform, kind: str, module, inputs: dict) -> torch.Tensor:
    """The layer's decode step captured and replayed: the replay's output, copied out."""
    saved = tuple(t.clone() for t in inputs["state"]) if "state" in inputs else None
    restore(module, inputs, saved)
    captured = capture_and_replay(
        platform,
        platform.graph(),
        lambda: forward(kind, module, inputs),
        lambda: restore(module, inputs, saved),
    )
    return captured.clone()


def eager(kind: str, module, inputs: dict, native_layout: str = "nhd") -> torch.Tensor:
    """The same step on (reference-kernel) ``module``, eagerly, from its own copy of the state."""
    own = dict(inputs)
    if "state" in inputs:
        own["state"] = tuple(t.clone() for t in inputs["state"])
        if (
            kind == "attention" and native_layout != module.kv_layout
        ):  # the same cache, in this layer's layout
            own["state"] = tuple(from_token_major(to_token_major(t, native_layout), module.kv_layout).contiguous()
                                 for t in own["state"])  # fmt: skip
        restore(module, own, own["state"])
    return forward(kind, module, own)
