"""Guarded calls into plugin code: nothing a plugin does may take the engine or the CLI down.

Every import of a plugin, every hook call and every member of a plugin's platforms
runs through :func:`guarded` (or the probes below), which times the call and turns
any exception, ``SystemExit`` included, into a message naming the call. Only
``KeyboardInterrupt`` and ``GeneratorExit`` pass through: they are the user's and
the interpreter's, not the plugin's.
"""

from __future__ import annotations

import functools
import inspect
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tessera import pluggable_layers
from tessera.errors import PlatformError
from tessera.platform import Availability, Capabilities, DeviceInfo, Platform

#: an import or hook slower than this is named with a warning
SLOW_PLUGIN_SECONDS = 1.0
PASS_THROUGH = (KeyboardInterrupt, GeneratorExit)


def describe(exc: BaseException) -> str:
    """``TypeName: message``, with ``sys.exit`` spelled out and the plugin's own line when known."""
    if isinstance(exc, SystemExit):
        text = f"called sys.exit({exc.code!r})"
    else:
        text = f"{type(exc).__name__}: {exc}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not _internal(f.filename)]
    if frames:
        text += f" ({frames[-1].filename}:{frames[-1].lineno})"
    return text


_OWN = (str(Path(__file__).parent) + "/", str(Path(pluggable_layers.__file__).parent) + "/")


def _internal(filename: str) -> bool:
    """Frames of the import machinery, pluggy and tessera itself: the plugin's own line is the one to show."""
    return filename.startswith("<frozen") or "pluggy" in filename or filename.startswith(_OWN)


@dataclass
class Outcome:
    """What one guarded call gave: its value, or the description of what it raised, and its duration."""

    value: Any = None
    error: str | None = None
    seconds: float = 0.0
    exception: BaseException | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None


def guarded(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Outcome:
    """Call ``fn``; any exception but KeyboardInterrupt/GeneratorExit becomes ``Outcome.error``."""
    start = time.perf_counter()
    try:
        value = fn(*args, **kwargs)
    except PASS_THROUGH:
        raise
    except BaseException as exc:  # noqa: BLE001 - a plugin's fault, sys.exit included, is recorded
        return Outcome(error=describe(exc), seconds=time.perf_counter() - start, exception=exc)
    return Outcome(value=value, seconds=time.perf_counter() - start)


# -- platforms ----------------------------------------------------------------------------

#: the Platform members run by the engine after discovery; each is wrapped per instance
RUNTIME_MEMBERS = tuple(
    name for name, member in vars(Platform).items() if not name.startswith("_") and inspect.isfunction(member)
)


def static_problem(platform: Platform) -> str | None:
    """Why the class attributes of ``platform`` are unusable, or None. Checked once, at discovery."""
    cls = type(platform).__name__
    for attr in ("name", "device_type"):
        value = getattr(platform, attr, None)
        if not isinstance(value, str) or not value.strip():
            return f"{cls}.{attr} is {value!r}; it must be a non-empty string (set the class attribute)"
    priority = getattr(platform, "priority", None)
    if isinstance(priority, bool) or not isinstance(priority, int):
        return (
            f"{cls}.priority is {priority!r} ({type(priority).__name__}); it must be an int "
            "(higher wins when no platform is named; accelerators above CPU)"
        )
    return None


def guard_members(platform: Platform, owner: str) -> None:
    """Wrap each member of ``platform`` so that a non-Exception escape (sys.exit) becomes a PlatformError.

    Ordinary exceptions pass unchanged: the engine handles them per step. ``owner``
    names the plugin in the message.
    """
    if getattr(platform, "_tessera_guarded", False):
        return
    for name in RUNTIME_MEMBERS:
        if callable(getattr(platform, name, None)):
            setattr(platform, name, _guard_member(platform, name, owner))
    platform._tessera_guarded = True  # type: ignore[attr-defined]


def _guard_member(platform: Platform, member: str, owner: str) -> Callable[..., Any]:
    own = vars(platform).get(
        member
    )  # set by the plugin on the instance, else looked up on the class per call
    cls = type(platform)

    @functools.wraps(getattr(platform, member))
    def call(*args: Any, **kwargs: Any) -> Any:
        fn = own if own is not None else getattr(cls, member).__get__(platform, cls)
        try:
            return fn(*args, **kwargs)
        except (Exception, *PASS_THROUGH):
            raise
        except BaseException as exc:  # noqa: BLE001 - SystemExit from a platform member
            raise PlatformError(
                f"platform {platform.name!r} (plugin {owner}): {member}() {describe(exc)}; "
                "the plugin must raise an exception, not exit"
            ) from None

    return call


@dataclass
class Probe:
    """A platform's answers to availability(), devices() and capabilities(0), each checked for type."""

    availability: Availability
    devices: list[DeviceInfo] = field(default_factory=list)
    capabilities: Capabilities | None = None


def _unavailable(reason: str) -> Probe:
    return Probe(Availability(available=False, reason=reason))


def probe(platform: Platform, device_index: int = 0) -> Probe:
    """Ask a platform about itself; a platform that raises or answers the wrong type is unavailable, with why."""
    got = guarded(platform.availability)
    if not got.ok:
        return _unavailable(f"availability() raised {got.error}")
    if not isinstance(got.value, Availability):
        return _unavailable(
            f"availability() returned {got.value!r} ({type(got.value).__name__}); "
            "it must return tessera.platform.Availability(available=..., reason=...)"
        )
    if not got.value.available:
        return Probe(got.value)
    devices = guarded(platform.devices)
    if not devices.ok:
        return _unavailable(f"devices() raised {devices.error}")
    if not isinstance(devices.value, list | tuple) or not all(
        isinstance(d, DeviceInfo) for d in devices.value
    ):
        return _unavailable(
            f"devices() returned {devices.value!r}; it must return a list of tessera.platform.DeviceInfo"
        )
    caps = guarded(platform.capabilities, device_index)
    if not caps.ok:
        return _unavailable(f"capabilities({device_index}) raised {caps.error}")
    if not isinstance(caps.value, Capabilities):
        return _unavailable(
            f"capabilities({device_index}) returned {type(caps.value).__name__}; "
            "it must return tessera.platform.Capabilities"
        )
    return Probe(got.value, list(devices.value), caps.value)
