"""Where Tessera keeps per-user data: tuned configs, certificates, the default model."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """``$TESSERA_HOME``, else ``$XDG_DATA_HOME/tessera``, else ``~/.local/share/tessera``."""
    if os.environ.get("TESSERA_HOME"):
        return Path(os.environ["TESSERA_HOME"])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tessera"


def cache_dir() -> Path:
    """``$TESSERA_CACHE``, else ``$XDG_CACHE_HOME/tessera``, else ``~/.cache/tessera``."""
    if os.environ.get("TESSERA_CACHE"):
        return Path(os.environ["TESSERA_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tessera"
