"""Text prompts through a tokenizer.json (the `tokenizers` library) and incremental detokenization."""

from __future__ import annotations

import json
import shutil

import pytest

from tessera import LLM, SamplingParams
from tessera.tokenizer import ByteTokenizer, IncrementalDetokenizer


def test_text_prompt_through_tokenizer_json(tmp_path, checkpoints):
    tokenizers = pytest.importorskip("tokenizers")
    target = tmp_path / "model"
    shutil.copytree(checkpoints("llama"), target)
    vocab = {f"w{i}": i for i in range(200)} | {"[UNK]": 200}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok.save(str(target / "tokenizer.json"))
    config = json.loads((target / "config.json").read_text())
    config["eos_token_id"] = None
    (target / "config.json").write_text(json.dumps(config))
    llm = LLM(str(target))
    out = llm.generate(["w5 w6 w7"], SamplingParams(temperature=0, max_tokens=6))[0]
    same = llm.generate([{"prompt_token_ids": [5, 6, 7]}], SamplingParams(temperature=0, max_tokens=6))[0]
    assert out.prompt_token_ids == [5, 6, 7] and out.outputs[0].token_ids == same.outputs[0].token_ids
    assert out.outputs[0].text.split() == [f"w{i}" if i < 200 else "[UNK]" for i in out.outputs[0].token_ids]


def test_incremental_detokenizer_never_splits_a_character():
    tok = ByteTokenizer()
    ids = tok.encode("né🙂")[1:]  # drop bos
    detok = IncrementalDetokenizer(tok)
    deltas = [detok.update(ids[: i + 1]) for i in range(len(ids))]
    assert "".join(deltas) == "né🙂"
    assert all("\ufffd" not in d for d in deltas)
