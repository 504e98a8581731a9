"""Tuned kernel configs, the Helion way: a config space, a bucketed shape key, JSON files per device.

A kernel declares a :class:`ConfigSpace` (parameters, candidate values,
constraints, a default) and a :class:`ShapeKey` (which call dimensions select a
config, and how they are bucketed). Tuned configs live in
``configs/<kernel>/<canonical_device>.json`` (schema :class:`TunedConfigFile`).
:class:`ConfigLookup` finds the config for a call:

1. an exact key in ``$TESSERA_TUNED_CONFIG_DIR``, then in the folders the
   platform plugins registered, each tried for the canonical device name, then
   for the architecture (``sm_100`` holds capability-family defaults);
2. the nearest key in the first valid file (numeric fields compared in log2);
3. the file's default, else the space's default, recorded as a coverage miss.

A corrupt or schema-invalid file is reported once and ignored, never fatal. A
file tuned before the kernel gained a parameter keeps its configs, the new
parameter at the space's default; an unknown parameter invalidates the file.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator

log = logging.getLogger("tessera.tuning")

TUNED_DIR_ENV = "TESSERA_TUNED_CONFIG_DIR"
ConfigValue = int | float | str | bool
Config = dict[str, ConfigValue]


class ConfigSpace:
    """Parameters with candidate values, constraints between them, and a default config."""

    def __init__(
        self,
        params: Mapping[str, Sequence[ConfigValue]],
        default: Config,
        constraints: Sequence[Callable[[Config], bool]] = (),
        narrow: Callable[[Mapping[str, Any]], Mapping[str, Sequence[ConfigValue]]] | None = None,
        optional: Mapping[str, Sequence[ConfigValue]] | None = None,
    ) -> None:
        self.params = {k: tuple(v) for k, v in params.items()}
        #: parameters a config may carry or leave out (backend launch options such as waves_per_eu)
        self.optional = {k: tuple(v) for k, v in (optional or {}).items()}
        self.constraints = tuple(constraints)
        #: per shape key, the candidate lists worth timing (parameters the shape does not use fixed)
        self.narrow = narrow
        self.default = dict(default)
        problem = self.problem(self.default)
        if problem:
            raise ValueError(f"default config {self.default} is invalid: {problem}")

    def problem(self, config: Mapping[str, Any]) -> str | None:
        """Why ``config`` is not a member of this space, or None."""
        missing = set(self.params) - set(config)
        extra = set(config) - set(self.params) - set(self.optional)
        if missing or extra:
            return f"parameters missing {sorted(missing)} / unknown {sorted(extra)}"
        for name, value in config.items():
            candidates = self.params.get(name, self.optional.get(name, ()))
            if not is_candidate(value, candidates):
                kinds = sorted({type(c).__name__ for c in candidates})
                return (
                    f"{name}={value!r} ({type(value).__name__}) is not a candidate "
                    f"({', '.join(map(repr, candidates))}; of type {'/'.join(kinds)})"
                )
        for constraint in self.constraints:
            name = getattr(constraint, "__name__", constraint)
            try:
                holds = constraint(dict(config))
            except Exception as exc:  # noqa: BLE001 - a config the constraint cannot judge is not a member
                return f"constraint {name} raised {type(exc).__name__}: {exc}"
            if not holds:
                return f"violates constraint {name}"
        return None

    def configs(self, key: Mapping[str, Any] | None = None) -> list[Config]:
        """Every valid config (cartesian product filtered by the constraints), narrowed for ``key`` if given."""
        names = list(self.params)
        lists = dict(self.params)
        if key is not None and self.narrow is not None:
            lists.update({k: tuple(v) for k, v in self.narrow(key).items()})
        out = []
        for values in itertools.product(*(lists[n] for n in names)):
            config = dict(zip(names, values, strict=True))
            if all(c(config) for c in self.constraints):
                out.append(config)
        return out


def is_candidate(value: Any, candidates: Sequence[ConfigValue]) -> bool:
    """Membership by type and value: 256.0 is not the candidate 256, and True is not 1."""
    return any(type(value) is type(c) and value == c for c in candidates)


def bucket_pow2(n: int) -> int:
    """Next power of two at or above n (1 for n <= 1)."""
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


BUCKETS: dict[str, Callable[[Any], Any]] = {"pow2": bucket_pow2, "exact": lambda v: v}


class ShapeKey:
    """Named call dimensions, bucketed, that select a tuned config."""

    def __init__(self, fields: Mapping[str, str], extract: Callable[..., Mapping[str, Any]]) -> None:
        unknown = {b for b in fields.values() if b not in BUCKETS}
        if unknown:
            raise ValueError(f"unknown bucketing {sorted(unknown)}; use one of {sorted(BUCKETS)}")
        self.fields = dict(fields)
        self.extract = extract

    def of(self, **dims: Any) -> tuple[tuple[str, Any], ...]:
        return tuple((name, BUCKETS[b](dims[name])) for name, b in self.fields.items())

    def of_call(self, *args: Any, **kwargs: Any) -> tuple[tuple[str, Any], ...]:
        return self.of(**self.extract(*args, **kwargs))

    @staticmethod
    def to_str(key: tuple[tuple[str, Any], ...]) -> str:
        return ",".join(f"{k}={v}" for k, v in key)


def parse_key(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        try:
            out[name] = int(value)
        except ValueError:
            out[name] = value
    return out


SCHEMA_VERSION = 1


class TunedConfigFile(BaseModel):
    """``configs/<kernel>/<device>.json``: tuned configs by shape key, plus a default."""

    schema_version: int = SCHEMA_VERSION
    kernel: str
    device: str
    key_fields: list[str]
    configs: dict[str, dict[str, ConfigValue]] = Field(default_factory=dict)
    default: dict[str, ConfigValue] | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("schema_version", mode="before")
    @classmethod
    def _known_version(cls, value: Any) -> int:
        if type(value) is not int or value != SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {value!r} is not one this tessera reads ({SCHEMA_VERSION}); "
                "re-tune with `tessera tune KERNEL` or install the tessera that wrote it"
            )
        return value


def describe_file_error(path: Path, exc: ValidationError) -> str:
    """``path: field a.b.c: what is wrong (got value)`` for each problem, union alternatives folded into one."""
    seen: dict[str, str] = {}
    for error in exc.errors():
        loc = [str(p) for p in error["loc"]]
        if error["type"] == "json_invalid":
            seen.setdefault("json", f"not valid JSON: {error['ctx'].get('error', error['msg'])}")
            continue
        if loc and loc[-1] in _UNION_MEMBERS:
            loc = loc[:-1]
        where = ".".join(loc) or "file"
        got = "" if error["type"] == "missing" else f" (got {error.get('input')!r})"
        seen.setdefault(where, f"field {where}: {error['msg'].removeprefix('Value error, ')}{got}")
    return f"{path}: " + "; ".join(seen.values())


_UNION_MEMBERS = {"int", "float", "str", "bool"}


def load_config_file(path: Path, kernel: str, space: ConfigSpace) -> TunedConfigFile:
    """Parse and validate a file; raises ValueError describing what is wrong."""
    try:
        data = TunedConfigFile.model_validate_json(path.read_text())
    except ValidationError as exc:
        raise ValueError(describe_file_error(path, exc)) from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot be read: {type(exc).__name__}: {exc}") from None
    if data.kernel != kernel:
        raise ValueError(f"{path}: holds configs for kernel {data.kernel!r}, not {kernel!r}")
    # a file tuned before the kernel gained a parameter keeps its configs, the new parameter at its default
    added = {name: space.default[name] for name in space.params}
    for config in [*data.configs.values(), *([data.default] if data.default else [])]:
        for name, value in added.items():
            if name not in config:
                config[name] = value
                log.debug("%s: parameter %s not in the file; using the default %r", path, name, value)
    for key, config in [*data.configs.items(), *([("default", data.default)] if data.default else [])]:
        problem = space.problem(config)
        if problem:
            where = "default" if key == "default" else f"configs.{key}"
            raise ValueError(f"{path}: field {where}: not in the kernel's config space: {problem}")
    return data


def key_distance(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """log2 distance over numeric fields; infinite when a non-numeric field differs."""
    total = 0.0
    for name, va in a.items():
        vb = b.get(name)
        if isinstance(va, int) and isinstance(vb, int):
            total += abs(math.log2(max(va, 1)) - math.log2(max(vb, 1)))
        elif va != vb:
            return math.inf
    return total


class ConfigLookup:
    """Finds the tuned config of one kernel on one device, with the order the module docstring gives."""

    def __init__(
        self,
        kernel: str,
        space: ConfigSpace,
        shape_key: ShapeKey,
        directories: Sequence[Path],
        device_names: Sequence[str],
    ) -> None:
        self.kernel = kernel
        self.space = space
        self.shape_key = shape_key
        self.files: list[tuple[Path, TunedConfigFile]] = []
        self.errors: list[str] = []
        self.misses: set[str] = set()
        self.sources: dict[str, str] = {}
        self._cache: dict[tuple, Config] = {}
        user = os.environ.get(TUNED_DIR_ENV)
        search = ([Path(user)] if user else []) + list(directories)
        for directory in search:
            for device in device_names:
                path = directory / kernel / f"{device}.json"
                if not path.is_file():
                    continue
                try:
                    self.files.append((path, load_config_file(path, kernel, space)))
                except ValueError as exc:
                    self.errors.append(str(exc))
                    log.warning("ignoring tuned-config file: %s", exc)

    def get(self, key: tuple[tuple[str, Any], ...]) -> Config:
        if key not in self._cache:
            self._cache[key] = self._resolve(key)
        return self._cache[key]

    def _resolve(self, key: tuple[tuple[str, Any], ...]) -> Config:
        text = ShapeKey.to_str(key)
        for path, data in self.files:
            if text in data.configs:
                self.sources[text] = f"{path} (exact)"
                return dict(data.configs[text])
        if self.files:
            path, data = self.files[0]
            wanted = dict(key)
            scored = [(key_distance(wanted, parse_key(k)), k) for k in data.configs]
            scored = [s for s in scored if s[0] < math.inf]
            if scored:
                _, nearest = min(scored)
                self.sources[text] = f"{path} (nearest key {nearest})"
                return dict(data.configs[nearest])
            if data.default:
                self.misses.add(f"{self.kernel}[{text}]")
                self.sources[text] = f"{path} (file default; coverage miss)"
                return dict(data.default)
        self.misses.add(f"{self.kernel}[{text}]")
        self.sources[text] = "kernel default (no tuned file; coverage miss)"
        return dict(self.space.default)


def write_config_file(path: Path, data: TunedConfigFile) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data.model_dump(mode="json"), indent=2, sort_keys=False) + "\n")
    return path
