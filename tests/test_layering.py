"""The layering rule of DESIGN.md section 2, checked on the syntax tree.

core/, pluggable_layers/ and conformance/ never touch torch.cuda, torch.xpu, torch.version.hip,
triton, a vendor library or a plugin, and never compare a device type with a literal
(``device.type == "cpu"``, ``platform.device_type != "cuda"``); pluggable_layers/ never imports the core.
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
PACKAGE_ROOTS = {
    "core": "tessera",
    "pluggable_layers": "tessera.pluggable_layers",
    "conformance": "tessera.conformance",
}
#: attributes (and names) holding a torch device type or a platform's device type
DEVICE_TYPE_NAMES = ("type", "device_type")


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


def is_literal(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    return isinstance(node, ast.Tuple | ast.List | ast.Set) and any(is_literal(e) for e in node.elts)


def device_type_compared(node: ast.Compare) -> str | None:
    """The device type compared with a string literal in ``node``, or None."""
    operands = [node.left, *node.comparators]
    if not any(is_literal(o) for o in operands):
        return None
    for o in operands:
        if isinstance(o, ast.Attribute) and o.attr in DEVICE_TYPE_NAMES:
            return dotted(o) or f"....{o.attr}"
        if isinstance(o, ast.Name) and o.id == "device_type":
            return o.id
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
        elif isinstance(node, ast.Compare) and (compared := device_type_compared(node)):
            found.append(
                f"{path.relative_to(REPO)}:{node.lineno}: device-type branch on {compared} "
                "(make it a Platform member or a Capabilities field)"
            )
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
    assert {p.relative_to(REPO).parts[0] for p in python_files()} == set(PACKAGE_ROOTS)


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
        ("from tessera.discovery import discover\n", "pluggable_layers/x.py", "imports core module"),
        (
            "if runner.device.type == 'cpu':\n    pass\n",
            "core/x.py",
            "device-type branch on runner.device.type",
        ),
        ("pin = platform.device_type != 'cuda'\n", "core/x.py", "device-type branch on platform.device_type"),
        ("ok = t.to(d).device.type in ('cuda', 'xpu')\n", "pluggable_layers/x.py", "device-type branch"),
        ("big = 'cpu' != device_type\n", "conformance/x.py", "device-type branch on device_type"),
        ("import torch\nx = torch.cuda.is_available()\n", "conformance/x.py", "uses torch.cuda"),
    ],
)
def test_checker_catches_violations(source, where, expected):
    assert any(expected in v for v in violations(REPO / where, source))
