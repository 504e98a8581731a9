"""Errors of the engine; the base classes live with the contract so plugins share them."""

from tessera.pluggable_layers.errors import (
    ConfigError,
    KernelError,
    KernelInputError,
    PlatformError,
    PluginError,
    TesseraError,
)

__all__ = [
    "ConfigError",
    "RequestError",
    "KernelError",
    "KernelInputError",
    "PlatformError",
    "PluginError",
    "TesseraError",
]


def describe_validation_error(exc) -> str:
    """One line per problem of a pydantic ValidationError: ``field: message``, without pydantic's "Value error, "
    prefix (a model-level check's message names its fields itself, so it comes alone)."""
    lines = []
    for e in exc.errors():
        message = e["msg"].removeprefix("Value error, ")
        lines.append(f"{'.'.join(str(p) for p in e['loc'])}: {message}" if e["loc"] else message)
    return "; ".join(lines)


class RequestError(ConfigError):
    """A request that cannot be served as given; ``param`` names the request field at fault (OpenAI's error
    ``param``), None when the request as a whole is."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class WorkerError(TesseraError):
    """A tensor-parallel worker died or failed: the engine cannot go on (its message names the rank)."""

    def __init__(self, rank: int, cause: str) -> None:
        super().__init__(f"tensor-parallel worker rank {rank} failed: {cause}")
        self.rank, self.cause = rank, cause


class StepMessageError(TesseraError):
    """A tensor-parallel worker got a step message that does not fit the requests it mirrors (a change to a
    request it was never sent, or was told to forget): its state no longer matches the driver's."""


def step_error(exc: BaseException) -> Exception:
    """What a failed engine step reports: the exception, or for a kernel or plugin that called ``sys.exit`` (which
    must not end the process serving everyone else) an error that says so."""
    if isinstance(exc, SystemExit):
        return RuntimeError(f"sys.exit({exc.code!r}) was called during the step (by a kernel or plugin)")
    return exc
