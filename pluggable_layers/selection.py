"""Choosing one kernel among an op's registered kernels for one query, with the verdict on every candidate.

:meth:`tessera.pluggable_layers.registry.KernelRegistry.select` resolves the overrides and calls
:func:`choose`; ``tessera kernels explain`` prints the candidates it returns.
"""

from __future__ import annotations

from tessera.pluggable_layers.errors import KernelError
from tessera.pluggable_layers.kernel_types import Candidate, KernelImpl, KernelQuery

#: how candidates are listed: the chosen one, those that would also serve, then those that refused
VERDICT_ORDER = {"selected": 0, "outranked": 1, "overridden-out": 1, "refused": 2}


def choose(
    kernels: list[KernelImpl], query: KernelQuery, chosen_name: str | None
) -> tuple[KernelImpl, list[Candidate]]:
    """The kernel for ``query`` among ``kernels`` (highest priority first): the override ``chosen_name``
    when it accepts (an error saying why when it refuses), else the first that accepts; and every
    kernel's verdict and reason, in listing order."""
    accepted: list[KernelImpl] = []
    candidates: list[Candidate] = []
    for kernel in kernels:
        reason = kernel.refusal(query)
        if reason is not None:
            candidates.append(Candidate(kernel, "refused", reason))
        else:
            accepted.append(kernel)
    if chosen_name is not None:
        selected = next((k for k in accepted if k.name == chosen_name), None)
        if selected is None:
            why = next(c.reason for c in candidates if c.kernel.name == chosen_name)
            raise KernelError(
                f"{query.op}: override chose kernel {chosen_name!r}, which cannot serve this call: {why}"
            )
    elif accepted:
        selected = accepted[0]
    else:
        raise KernelError(
            f"{query.op}: no kernel accepts {query.platform.name}/{query.dtype} (not even the reference)"
        )
    for kernel in accepted:
        if kernel is selected:
            how = (
                f"override {query.op}={kernel.name}"
                if chosen_name
                else f"highest priority ({kernel.priority})"
            )
            ties = [k.name for k in accepted if k is not kernel and k.priority == kernel.priority]
            if ties and not chosen_name:
                how += f"; tied with {', '.join(ties)}, taken by name order"
            candidates.append(Candidate(kernel, "selected", how))
        elif chosen_name:
            candidates.append(
                Candidate(kernel, "overridden-out", f"accepts, but the override chose {chosen_name}")
            )
        else:
            candidates.append(
                Candidate(kernel, "outranked", f"accepts, priority {kernel.priority} < {selected.priority}")
            )
    candidates.sort(key=lambda c: (VERDICT_ORDER[c.verdict], -c.kernel.priority, c.kernel.name))
    return selected, candidates
