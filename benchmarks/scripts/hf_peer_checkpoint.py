"""A random-weight checkpoint of a tessera preset that ``transformers serve`` can load, with a tokenizer.

    python3 benchmarks/scripts/hf_peer_checkpoint.py PRESET DIR [--device cuda] [--dtype bfloat16]

The model is built by transformers itself (``from_config`` on the device, its own initializer) and saved
with ``save_pretrained``. The tokenizer is word-level: token id i is the word ``w<i>``, words split on
spaces, no special tokens added, so a text prompt of n words is exactly n tokens (``tessera bench serve
--backend openai --tokenizer DIR`` sends the workload's random ids as such text). The checkpoint has no
EOS id (config.json and generation_config.json): generation runs to ``max_tokens``, as ``ignore_eos``
does on servers that take it; transformers serve does not.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def write_tokenizer(target: Path, vocab_size: int, max_len: int) -> None:
    import tokenizers

    vocab = {f"w{i}": i for i in range(vocab_size)}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="w0"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    tok.decoder = tokenizers.decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    tok.save(str(target / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "w0", "model_max_length": max_len,
              "clean_up_tokenization_spaces": False}  # fmt: skip
    (target / "tokenizer_config.json").write_text(json.dumps(config, indent=2))


def write_checkpoint(preset: str, target: Path, device: str, dtype: str) -> Path:
    import torch
    import transformers as tf

    from tessera.models.presets import PRESETS

    fields = {k: v for k, v in PRESETS[preset].items() if k not in ("architectures", "torch_dtype")}
    fields["eos_token_id"] = None  # no EOS: every request runs to max_tokens (ignore_eos)
    config = tf.AutoConfig.for_model(fields.pop("model_type"), **fields)
    config.architectures = list(PRESETS[preset]["architectures"])
    torch_dtype = getattr(torch, dtype)
    target.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with torch.device(device):
        model = tf.AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    model.generation_config.eos_token_id = None
    model.save_pretrained(target)
    write_tokenizer(target, config.vocab_size, config.max_position_embeddings)
    size = sum(p.stat().st_size for p in target.glob("*.safetensors")) / 2**30
    params = sum(p.numel() for p in model.parameters()) / 1e9
    print(f"wrote {target}: {params:.2f}B parameters, {size:.1f} GiB of safetensors in "
          f"{time.perf_counter() - start:.1f} s")  # fmt: skip
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("preset")
    parser.add_argument("target", type=Path)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16")
    args = parser.parse_args()
    write_checkpoint(args.preset, args.target, args.device, args.dtype)


if __name__ == "__main__":
    main()
