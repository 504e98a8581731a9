"""Merge freshly tuned files (``tessera tune --out RUN``) into the cuda plugin's shipped configs.

Each ``RUN/<kernel>/<device>.json`` replaces the keys it holds in
``plugins/cuda/tessera_cuda/configs/<kernel>/<device>.json`` (other keys stay),
with their timings. With ``--family``, the same keys are copied into that
kernel's capability-family files (sm_90, and the never-run sm_100 / sm_103
starting points), whose notes say where they came from.

    python benchmarks/scripts/merge_tuned.py RUN --family sm_90 sm_100 sm_103
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SHIPPED = Path(__file__).resolve().parents[2] / "plugins" / "cuda" / "tessera_cuda" / "configs"


def merge(src: dict, dst: dict, with_timings: bool) -> None:
    dst["configs"].update(src["configs"])
    if with_timings:
        meta = dst.setdefault("meta", {})
        meta.setdefault("timings_ms", {}).update(src["meta"].get("timings_ms", {}))
        kinds = {w for t in meta["timings_ms"].values() for w in t.get("timed_with", ["eager events"])}
        meta["timed_with"] = sorted(kinds)
        meta["tuned_at"] = src["meta"].get("tuned_at", meta.get("tuned_at"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path)
    parser.add_argument("--family", nargs="*", default=[])
    args = parser.parse_args()
    for path in sorted(args.run.glob("*/*.json")):
        kernel, src = path.parent.name, json.loads(path.read_text())
        targets = [(SHIPPED / kernel / path.name, True)] + [
            (SHIPPED / kernel / f"{f}.json", False) for f in args.family
        ]
        for target, with_timings in targets:
            if target.exists():
                dst = json.loads(target.read_text())
            elif with_timings:
                dst = src
            else:
                continue
            merge(src, dst, with_timings)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(dst, indent=2) + "\n")
            print(f"{target.relative_to(SHIPPED)}: {len(src['configs'])} keys merged")


if __name__ == "__main__":
    main()
