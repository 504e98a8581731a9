"""Checkpoint loading: safetensors only (memory-mapped, no pickle), Hugging Face tensor names."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import torch

from tessera.models.spec import ModelLoadError

INDEX = "model.safetensors.index.json"
#: tensors kept in their stored dtype: fp8 weights, and the float32 scales of pre-quantized checkpoints
KEEP_DTYPE_SUFFIXES = (".weight_scale", ".input_scale")


def indexed_files(model_dir: Path) -> list[Path] | None:
    """The files ``model.safetensors.index.json`` names (None without an index); a missing one is an error."""
    index = model_dir / INDEX
    if not index.is_file():
        return None
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        names = sorted(set(weight_map.values()))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ModelLoadError(
            f"cannot read {index}: {exc!r}; it must hold a weight_map of tensor -> file"
        ) from None
    missing = [n for n in names if not (model_dir / n).is_file()]
    if missing:
        raise ModelLoadError(
            f"{index} names files that are missing: {', '.join(missing[:4])}; re-download them"
        )
    return [model_dir / n for n in names]


def safetensors_files(model_dir: Path) -> list[Path]:
    """The files to load: those the index names when there is one (a Mistral folder's extra
    consolidated.safetensors is then skipped), else every ``*.safetensors``."""
    indexed = indexed_files(model_dir)
    if indexed is not None:
        return indexed
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        found = ", ".join(sorted(p.name for p in model_dir.iterdir())[:8]) or "nothing"
        raise ModelLoadError(
            f"{model_dir} has no *.safetensors files (found: {found}); convert .bin checkpoints to safetensors"
        )
    return files


class LazySlice:
    """One checkpoint tensor not read yet: ``shape``, and ``[slices]`` reads just those elements from the file
    (safetensors' ``get_slice``), cast to the model dtype and moved to the device. Sharded layers read their
    rank's part this way, so no rank reads the whole model."""

    def __init__(self, handle, device: torch.device, dtype: torch.dtype, name: str = "") -> None:
        self._handle, self._device, self._dtype, self._name = handle, device, dtype, name
        self.shape = tuple(handle.get_shape())

    def __getitem__(self, index) -> torch.Tensor:
        return _cast(self._handle[index], self._device, self._dtype, self._name)


def _cast(tensor: torch.Tensor, device: torch.device, dtype: torch.dtype, name: str = "") -> torch.Tensor:
    """Floats to the model dtype, except fp8 weights and the scales quantized checkpoints keep in float32."""
    keep = tensor.dtype == torch.float8_e4m3fn or name.endswith(KEEP_DTYPE_SUFFIXES)
    if tensor.is_floating_point() and not keep:
        tensor = tensor.to(dtype)
    return tensor.to(device)


def iterate_weights(
    model_dir: Path, device: torch.device, dtype: torch.dtype, lazy: bool = False
) -> Iterator[tuple[str, torch.Tensor | LazySlice]]:
    """(name, tensor) for every tensor of every safetensors file, floats cast to ``dtype`` on ``device``;
    with ``lazy`` (tensor-parallel ranks) each tensor is a :class:`LazySlice` read only where indexed."""
    from safetensors import SafetensorError, safe_open

    for path in safetensors_files(model_dir):
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                for name in f.keys():  # noqa: SIM118 - safe_open has no __iter__
                    if lazy:
                        yield name, LazySlice(f.get_slice(name), device, dtype, name)
                    else:
                        yield name, _cast(f.get_tensor(name), device, dtype, name)
        except (SafetensorError, OSError, RuntimeError) as exc:
            raise ModelLoadError(
                f"cannot read {path}: {exc} (is the file truncated or corrupt? re-download it)"
            ) from None
