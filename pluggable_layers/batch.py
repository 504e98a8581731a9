"""Per-step batch metadata the engine hands to the layers (flat, token-major).

The runner orders sequences decode-first: the first ``num_decodes`` sequences
have exactly one query token and existing state; the rest are prefill chunks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class AttentionMetadata:
    slot_mapping: torch.Tensor  # [T] int64, -1 for padding tokens
    query_start_loc: torch.Tensor  # [B+1] int32
    seq_lens: torch.Tensor  # [B] int32, context length including this step's tokens
    block_tables: torch.Tensor  # [B, max_blocks] int32


@dataclass
class MambaMetadata:
    query_start_loc: torch.Tensor  # [B+1] int32
    state_indices: torch.Tensor  # [B] int32, slot of each sequence in the state pools
    has_initial_state: torch.Tensor  # [B] bool, false for a sequence's first chunk
    num_decodes: int  # leading one-token sequences served by the decode kernels


@dataclass
class BatchMetadata:
    num_tokens: int
    attention: AttentionMetadata | None = None
    mamba: MambaMetadata | None = None
