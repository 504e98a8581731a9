"""The decoder-only causal LM skeleton every architecture fills in."""

from __future__ import annotations

import re
from collections.abc import Iterable

import torch
from torch import nn

from tessera.models.common import Rule, load_by_rules, param_loader, weight_loader
from tessera.models.spec import ModelLoadError, ModelSpec
from tessera.pluggable_layers.attention import Attention
from tessera.pluggable_layers.batch import BatchMetadata
from tessera.pluggable_layers.context import KernelContext
from tessera.pluggable_layers.mamba import Mamba2Mixer
from tessera.pluggable_layers.norm import RMSNorm
from tessera.pluggable_layers.parallel import lm_head, vocab_embedding


class CausalLM(nn.Module):
    """embed -> layers -> final norm -> lm_head. Subclasses build ``self.layers`` and their weight rules."""

    final_norm_name = "model.norm"

    def __init__(self, spec: ModelSpec, ctx: KernelContext) -> None:
        super().__init__()
        self.spec = spec
        self.embed_tokens = vocab_embedding(spec.vocab_size, spec.hidden_size, ctx, "model.embed_tokens")
        self.layers = nn.ModuleList()
        self.norm = RMSNorm(
            spec.hidden_size, float(spec.get("rms_norm_eps", default=1e-6)), ctx, "model.norm"
        )
        self.tie_word_embeddings = bool(spec.get("tie_word_embeddings", default=False))
        self.lm_head = lm_head(spec.hidden_size, spec.vocab_size, ctx, "lm_head")
        if self.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, meta: BatchMetadata) -> torch.Tensor:
        hidden = self.embed_tokens(input_ids)
        residual = None
        for layer in self.layers:
            hidden, residual = layer(positions, hidden, residual, meta)
        hidden, _ = self.norm(hidden, residual)
        return hidden

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(hidden)

    def attention_layers(self) -> list[Attention]:
        return [m for m in self.modules() if isinstance(m, Attention)]

    def mamba_layers(self) -> list[Mamba2Mixer]:
        return [m for m in self.modules() if isinstance(m, Mamba2Mixer)]

    # -- weights ----------------------------------------------------------------------
    def weight_rules(self) -> list[Rule]:
        """Rules for the layers; the embedding, final norm and lm_head rules are added here."""
        raise NotImplementedError

    def ignored_weights(self) -> tuple[str, ...]:
        return (r"rotary_emb\.inv_freq$",)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Load Hugging Face-named tensors; every parameter must be written (checked by NaN-filling first)."""
        with torch.no_grad():
            for p in self.parameters():
                if p.is_floating_point():
                    p.fill_(float("nan"))
        rules = [
            (
                re.compile(r"model\.embed_tokens\.weight"),
                lambda m: weight_loader(self.embed_tokens, "embed_tokens"),
            ),
            (
                re.compile(re.escape(self.final_norm_name) + r"\.weight"),
                lambda m: param_loader(self.norm.weight, "norm"),
            ),
            (re.compile(r"lm_head\.weight"), lambda m: weight_loader(self.lm_head, "lm_head")),
            *self.weight_rules(),
        ]
        loaded = load_by_rules(rules, weights, self.ignored_weights())
        if "lm_head.weight" not in loaded and not self.tie_word_embeddings:
            raise ModelLoadError("the checkpoint has no lm_head.weight and tie_word_embeddings is false")
        missing = [
            name
            for name, p in self.named_parameters()
            if p.is_floating_point() and bool(torch.isnan(p).any())
        ]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise ModelLoadError(
                f"the checkpoint does not cover every weight of the model: {shown} not (fully) loaded"
            )
        for module in self.modules():
            finish = getattr(module, "finish_loading", None)
            if finish is not None and module is not self:
                finish()


def layer_index(match: re.Match, layers: nn.ModuleList) -> nn.Module | None:
    i = int(match.group("layer"))
    return layers[i] if i < len(layers) else None
