"""Prepared weights (plugin API 1.2): a layer hands its checkpoint-form weights to its kernel's ``prepare``
once after loading, and keeps only what comes back.

A layer that mixes in :class:`PreparedWeights` names its kernel ``self._kernel`` (a bound kernel whose op
declares ``weights``), holds those weights as attributes of the same names, and implements
:meth:`allocate_checkpoint_weights`, which makes them anew in the checkpoint's form, NaN-filled where
floating, so that a reload after a prepare finds the shapes it loads into (the prepared tensors are
dropped then; memory is never doubled for longer than the one layer being reloaded).
"""

from __future__ import annotations

import torch
from torch import nn

from tessera.pluggable_layers.ops import OPS


def as_parameter(t: torch.Tensor | None) -> nn.Parameter | None:
    return None if t is None else nn.Parameter(t, requires_grad=False)


def empty_weight(shape, dtype: torch.dtype, device) -> nn.Parameter:
    """A checkpoint-form weight to load into: NaN where floating (a part never loaded is then seen), else 0."""
    fill = float("nan") if dtype.is_floating_point else 0
    return nn.Parameter(torch.full(tuple(shape), fill, dtype=dtype, device=device), requires_grad=False)


class PreparedWeights:
    """Mixin: run the kernel's prepare once after loading; undo it (re-allocate) before a reload."""

    _prepared: bool = False

    def allocate_checkpoint_weights(self) -> None:
        raise NotImplementedError

    @property
    def weights_line(self) -> str | None:
        """ "prepared by X as Y" when the kernel prepares its weights, else None."""
        return self._kernel.kernel.weights_line()

    def prepare_weights(self) -> None:
        if self._prepared or self._kernel.kernel.prepare is None:
            return
        names = OPS[self._kernel.kernel.op].weights
        with torch.no_grad():
            prepared = self._kernel.prepare({n: getattr(self, n) for n in names})
            for name in names:
                setattr(self, name, None)  # drop the checkpoint form before the prepared one is kept
            for name, t in prepared.items():
                setattr(self, name, as_parameter(t.detach() if t is not None else None))
        self._prepared = True

    def unprepare(self) -> None:
        """Before loading again: back to empty checkpoint-form weights, if a prepare had replaced them."""
        if self._prepared:
            for name in OPS[self._kernel.kernel.op].weights:
                setattr(self, name, None)
            self.allocate_checkpoint_weights()
            self._prepared = False
