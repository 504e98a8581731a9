"""Registration of the pack's kernels with a registry."""


def register_all(registry) -> None:
    """Register every kernel of the pack (filled in op by op)."""
