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


def word_level_model(tmp_path, checkpoints, special: str | None = None):
    tokenizers = pytest.importorskip("tokenizers")
    target = tmp_path / "model"
    shutil.copytree(checkpoints("llama"), target)
    vocab = {f"w{i}": i for i in range(200)} | {"[UNK]": 200, "<eot>": 201}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    if special:
        tok.add_special_tokens([special])
    tok.save(str(target / "tokenizer.json"))
    config = json.loads((target / "config.json").read_text())
    config["eos_token_id"] = None
    (target / "config.json").write_text(json.dumps(config))
    return target, tok


def test_stop_strings_across_token_boundaries(tmp_path, checkpoints):
    target, tok = word_level_model(tmp_path, checkpoints)
    llm = LLM(str(target))
    base = SamplingParams(temperature=0, max_tokens=12)
    full = llm.generate([{"prompt_token_ids": [5, 6, 7]}], base, use_tqdm=False)[0].outputs[0]
    words = full.text.split()
    stop = words[1][-1] + " " + words[2][:2]  # the end of one token and the start of the next
    cut = full.text.find(stop)
    for include in (False, True):
        params = base.model_copy(
            update={"stop": (stop, "never-there"), "include_stop_str_in_output": include}
        )
        out = llm.generate([{"prompt_token_ids": [5, 6, 7]}], params, use_tqdm=False)[0].outputs[0]
        assert out.finish_reason == "stop" and out.stop_reason == stop
        assert out.text == full.text[: cut + (len(stop) if include else 0)]
        assert len(out.token_ids) < len(full.token_ids)


def test_streamed_text_never_shows_what_a_stop_string_cuts(tmp_path, checkpoints):
    """Each step's text is a prefix of the final text: the tail that may start a stop string waits."""
    target, _ = word_level_model(tmp_path, checkpoints)
    llm = LLM(str(target), async_scheduling=False)
    base = SamplingParams(temperature=0, max_tokens=12)
    full = llm.generate([{"prompt_token_ids": [5, 6, 7]}], base, use_tqdm=False)[0].outputs[0]
    words = full.text.split()
    stop = words[2][-1] + " " + words[3][:2]  # begins inside one token's text, ends in the next one's
    engine = llm.engine
    request_id = engine.add_request(
        {"prompt_token_ids": [5, 6, 7]}, base.model_copy(update={"stop": (stop,)})
    )
    texts = []
    while engine.has_unfinished():
        texts += [o.outputs[0].text for o in engine.step() if o.request_id == request_id]
    final = texts[-1]
    assert stop not in final and full.text.startswith(final)
    assert all(final.startswith(t) for t in texts), texts
    engine.release(request_id)


def test_detokenizer_uses_decode_stream_and_matches_full_decode(tmp_path, checkpoints):
    from tessera.tokenizer import HFTokenizer

    target, _ = word_level_model(tmp_path, checkpoints, special="<eot>")
    tok = HFTokenizer(target / "tokenizer.json", None)
    ids = [5, 201, 17, 3, 201, 44]
    for skip in (True, False):
        detok = IncrementalDetokenizer(tok, skip_special_tokens=skip)
        assert detok._step is not None  # DecodeStream, not a re-decode per step
        deltas = [detok.update(ids[: i + 1]) for i in range(len(ids))]
        assert "".join(deltas) == tok.decode(ids, skip_special_tokens=skip) == detok.finish(ids)
    assert "<eot>" not in tok.decode(ids) and "<eot>" in tok.decode(ids, skip_special_tokens=False)


def test_skip_special_tokens_in_outputs(tmp_path, checkpoints):
    target, _ = word_level_model(tmp_path, checkpoints, special="<eot>")
    llm = LLM(str(target))
    forced = {"temperature": 0, "max_tokens": 3, "logit_bias": {201: 100.0}}
    skipped = llm.generate(["w5"], forced, use_tqdm=False)[0].outputs[0]
    kept = llm.generate(["w5"], {**forced, "skip_special_tokens": False}, use_tqdm=False)[0].outputs[0]
    assert skipped.token_ids == kept.token_ids == [201] * 3
    assert skipped.text == "" and kept.text.split() == ["<eot>"] * 3


def test_offset_detokenizer_without_decode_stream():
    tok = ByteTokenizer()
    ids = tok.encode("añ 🙂 b")[1:]
    detok = IncrementalDetokenizer(tok)
    assert detok._step is None
    assert "".join(detok.update(ids[: i + 1]) for i in range(len(ids))) == "añ 🙂 b"


def test_weight_index_names_the_files_to_load(tmp_path, checkpoints):
    import torch
    from safetensors.torch import load_file, save_file

    target = tmp_path / "mistral"
    shutil.copytree(checkpoints("llama"), target)
    tensors = load_file(str(target / "model.safetensors"))
    names = sorted(tensors)
    half = len(names) // 2
    (target / "model.safetensors").unlink()
    save_file({n: tensors[n] for n in names[:half]}, str(target / "model-00001-of-00002.safetensors"))
    save_file({n: tensors[n] for n in names[half:]}, str(target / "model-00002-of-00002.safetensors"))
    # Mistral's consolidated file: other names, would break the loader if read
    save_file({"tok_embeddings.weight": torch.zeros(3, 3)}, str(target / "consolidated.safetensors"))
    index = {
        "weight_map": {
            n: f"model-0000{1 if i < half else 2}-of-00002.safetensors" for i, n in enumerate(names)
        }
    }
    (target / "model.safetensors.index.json").write_text(json.dumps(index))
    params = SamplingParams(temperature=0, max_tokens=6, ignore_eos=True)
    ours = LLM(str(target)).generate([[3, 4, 5]], params, use_tqdm=False)[0].outputs[0].token_ids
    ref = LLM(str(checkpoints("llama"))).generate([[3, 4, 5]], params, use_tqdm=False)[0].outputs[0].token_ids
    assert ours == ref
    index["weight_map"][names[0]] = "model-missing.safetensors"
    (target / "model.safetensors.index.json").write_text(json.dumps(index))
    from tessera.errors import TesseraError

    with pytest.raises(TesseraError, match="model-missing.safetensors"):
        LLM(str(target))
