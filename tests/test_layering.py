"""The layering rule of DESIGN.md section 2, checked on the syntax tree.

core/ and pluggable_layers/ never touch torch.cuda, torch.xpu, torch.version.hip,
triton, a vendor library or a plugin; pluggable_layers/ never imports the core.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from .conftest import REPO

FORBIDDEN_ATTRS = (
    "torch.cuda",
    "torch.xpu",
    "torch.version.hip",
    "torch.mps",
    "torch.backends.cuda",
    "torch.backends.cudnn",
)
FORBIDDEN_MODULES = (
    "triton",
    "tessera_",
    "intel_extension_for_pytorch",
    "aiter",
    "pynvml",
    "cupy",
    "flash_attn",
)
PACKAGE_ROOTS = {"core": "tessera", "pluggable_layers": "tessera.pluggable_layers"}


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO)
    parts = list(rel.with_suffix("").parts)
    root = PACKAGE_ROOTS[parts[0]]
    tail = [p for p in parts[1:] if p != "__init__"]
    return ".".join([root, *tail])


def resolve(node: ast.ImportFrom, current: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = current.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute):
        inner = dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    if isinstance(node, ast.Name):
        return node.id
    return None


def violations(path: Path, source: str | None = None) -> list[str]:
    tree = ast.parse(path.read_text() if source is None else source, filename=str(path))
    current = module_name(path)
    in_layers = current.startswith("tessera.pluggable_layers")
    found = []
    for node in ast.walk(tree):
        imported: list[str] = []
        if isinstance(node, ast.Import):
            imported = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = resolve(node, current, path.name == "__init__.py")
            imported = [base] + [f"{base}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Attribute):
            name = dotted(node)
            if name and any(name == f or name.startswith(f + ".") for f in FORBIDDEN_ATTRS):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: uses {name}")
        elif isinstance(node, ast.Call) and dotted(node.func) in ("is_cuda", "is_rocm", "is_xpu"):
            found.append(f"{path.relative_to(REPO)}:{node.lineno}: platform predicate")
        for name in imported:
            if any(
                name == m or name.startswith(m + ".") or (m.endswith("_") and name.startswith(m))
                for m in FORBIDDEN_MODULES
            ):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: imports {name}")
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN_ATTRS):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: imports {name}")
            if (
                in_layers
                and name.startswith("tessera")
                and not name.startswith("tessera.pluggable_layers")
                and name != "tessera"
            ):
                found.append(
                    f"{path.relative_to(REPO)}:{node.lineno}: pluggable_layers imports core module {name}"
                )
            if in_layers and name == "tessera" and isinstance(node, ast.Import):
                found.append(
                    f"{path.relative_to(REPO)}:{node.lineno}: pluggable_layers imports the core package"
                )
    return found


def python_files():
    return sorted(p for root in PACKAGE_ROOTS for p in (REPO / root).rglob("*.py"))


def test_tree_has_files():
    assert len(python_files()) > 5


def test_no_layering_violations():
    problems = [v for path in python_files() for v in violations(path)]
    assert not problems, "layering rule broken:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("source", "where", "expected"),
    [
        ("import torch\nx = torch.cuda.is_available()\n", "core/x.py", "uses torch.cuda"),
        ("from torch import cuda\n", "core/x.py", "imports torch.cuda"),
        ("import triton.language as tl\n", "core/x.py", "imports triton"),
        ("from tessera_cuda.platform import CudaPlatform\n", "core/x.py", "imports tessera_cuda"),
        ("import torch\nv = torch.version.hip\n", "pluggable_layers/x.py", "uses torch.version.hip"),
        (
            "from ...engine import scheduler\n",
            "pluggable_layers/sub/x.py",
            "imports core module tessera.engine",
        ),
        ("from tessera.plugins import discover\n", "pluggable_layers/x.py", "imports core module"),
    ],
)
def test_checker_catches_violations(source, where, expected):
    assert any(expected in v for v in violations(REPO / where, source))
