"""The engine freezes its startup heap, and a later engine makes an earlier one's collectable again: an engine
dropped inside a reference cycle is freed when the next one is built."""

from __future__ import annotations

import gc
import weakref

from tessera import LLM


def test_a_dropped_engine_in_a_cycle_is_freed_by_the_next_one(checkpoints):
    path = str(checkpoints("llama"))
    first = LLM(path, dtype="float32", kv_cache_bytes=1 << 22)
    assert gc.get_freeze_count() > 0  # startup done: its heap is out of the collector's walks
    first.cycle = first  # only the cyclic collector can free it now, and it is frozen
    gone = weakref.ref(first.engine)
    del first
    gc.collect()
    assert gone() is not None  # frozen: a collection does not reach it
    second = LLM(path, dtype="float32", kv_cache_bytes=1 << 22)
    assert gone() is None  # the second engine released the first before taking memory
    assert second.generate([[1, 2, 3]], use_tqdm=False)[0].outputs[0].token_ids
