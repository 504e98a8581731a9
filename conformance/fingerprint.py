"""Code fingerprints: a sha256 over the files of an installed distribution that decide what it does.

A certificate records one per plugin distribution and one for ``tessera`` (whose reference kernels
and layers the suite compares against), so a kernel whose code changed while its version stayed
the same makes the certificate stale. The files are found where the distribution's packages are
imported from, not in its RECORD (an editable install's RECORD does not list its sources): the
``.py`` sources, the shipped data (``.json``, such as tuned configs), compiled code (extension
modules and shared libraries, ``libx.so.1`` included; device binaries such as ``.cubin``, ``.hsaco``,
``.co``, ``.spv``) and native sources a plugin compiles at run time (``.cu``, ``.hip``, ``.cpp``,
headers) under each top-level package, by their import-relative paths (``tessera_triton/configs/...``),
so the same code gives the same fingerprint wherever and however it is installed. Computed once per
process.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata as importlib_metadata
import importlib.util
import re
import sys
from pathlib import Path

#: the suffixes of the files that decide behaviour: sources, data, compiled and device code, native sources
SUFFIXES = (
    ".py", ".json",
    ".so", ".pyd", ".dylib", ".dll",
    ".cubin", ".fatbin", ".ptx", ".hsaco", ".co", ".spv",
    ".cu", ".cuh", ".hip", ".c", ".cc", ".cpp", ".h", ".hpp",
)  # fmt: skip
#: folders that hold no behaviour: bytecode, and the committed results of conformance runs
#: (``tessera.conformance``'s ``certificates/``: a new certificate must not change the code it certifies)
SKIPPED_DIRS = ("__pycache__", "certificates")


def _top_level_names(dist: importlib_metadata.Distribution) -> list[str]:
    """The distribution's top-level import names: top_level.txt, else its entry points' modules, else
    the top folders of its RECORD."""
    names = (dist.read_text("top_level.txt") or "").split()
    names += [ep.module.split(".")[0] for ep in dist.entry_points if ep.module]
    if not names:
        names = [Path(f).parts[0].removesuffix(".py") for f in dist.files or () if f.suffix == ".py"]
    skip = ("__editable__", "..")
    return sorted({n for n in names if n and not n.startswith(skip)})


def _editable_mapping() -> dict[str, str]:
    """Package -> folder of the setuptools editable installs loaded in this process (their finders'
    MAPPING): a package that lives outside its parent's folder (``package-dir``) is found only there."""
    out: dict[str, str] = {}
    for name, module in list(sys.modules.items()):
        if name.startswith("__editable__") and name.endswith("_finder"):
            mapping = getattr(module, "MAPPING", None)
            if isinstance(mapping, dict):
                out |= {k: v for k, v in mapping.items() if isinstance(k, str) and isinstance(v, str)}
    return out


def _roots(dist: importlib_metadata.Distribution) -> dict[str, Path]:
    """Import-relative prefix (``tessera/conformance``) -> the folder or file it is imported from."""
    roots: dict[str, Path] = {}
    mapping = _editable_mapping()
    for name in _top_level_names(dist):
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.submodule_search_locations:
            for location in spec.submodule_search_locations:
                roots.setdefault(name, Path(location))
        elif spec is not None and spec.origin and spec.has_location:
            roots[f"{name}.py"] = Path(spec.origin)
        for package, folder in mapping.items():
            if package == name or package.startswith(name + "."):
                roots.setdefault(package.replace(".", "/"), Path(folder))
    return roots


_VERSIONED_LIBRARY = re.compile(r".+\.so(\.\d+)+")


def decides_behaviour(path: Path) -> bool:
    """Whether a file counts: one of SUFFIXES, or a versioned shared library (``libkernels.so.2.1``)."""
    return path.suffix in SUFFIXES or bool(_VERSIONED_LIBRARY.fullmatch(path.name))


def _files(roots: dict[str, Path]) -> dict[str, Path]:
    """Import-relative path -> file, for every file that decides behaviour under ``roots``."""
    out: dict[str, Path] = {}
    for prefix, root in roots.items():
        if root.is_file():
            out[prefix] = root
            continue
        for path in root.rglob("*"):
            rel = path.relative_to(root)
            if not decides_behaviour(path) or any(p in SKIPPED_DIRS for p in rel.parts[:-1]):
                continue
            if path.is_file():
                out.setdefault(f"{prefix}/{rel.as_posix()}", path)
    return out


@functools.cache
def code_fingerprint(distribution: str) -> str | None:
    """sha256 over the sorted import-relative paths and contents of ``distribution``'s files (None when
    it is not installed or none of its packages can be found)."""
    try:
        dist = importlib_metadata.distribution(distribution)
    except importlib_metadata.PackageNotFoundError:
        return None
    files = _files(_roots(dist))
    if not files:
        return None
    digest = hashlib.sha256()
    for rel in sorted(files):
        with open(files[rel], "rb") as f:  # in chunks: a plugin's binaries may be hundreds of MB
            content = hashlib.file_digest(f, "sha256").digest()
        digest.update(f"{rel}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()


def code_fingerprints(distributions) -> dict[str, str]:
    """``distribution -> fingerprint`` for each of ``distributions`` whose files can be found."""
    found = {d: code_fingerprint(d) for d in sorted(set(distributions))}
    return {d: fp for d, fp in found.items() if fp is not None}
