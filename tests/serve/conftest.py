"""A tiny checkpoint with a word-level tokenizer.json and a chat template, and a real server over it.

The server is uvicorn on 127.0.0.1 with an ephemeral port, in a thread of the test process, over an engine-core
process as ``tessera serve`` runs it (tests look at the frontend's state); ``test_cli_serve`` starts
``tessera serve`` as a subprocess too.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import threading
import time

import pytest

from ..engine.conftest import deadline  # noqa: F401 - shared fixture
from ..hf_checkpoints import write_tiny_checkpoint

if any(
    importlib.util.find_spec(m) is None
    for m in ("fastapi", "uvicorn", "openai", "jinja2", "httpx", "zmq", "msgspec")
):
    collect_ignore_glob = ["test_*.py"]  # the serve extra is not installed: pip install -e ".[serve]"

SPECIALS = {"<unk>": 0, "<s>": 1, "</s>": 2}
ROLES = {"system": 3, "user": 4, "assistant": 5, ":": 6}
TEMPLATE = ("{{ bos_token }}{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} {% endfor %}"
            "{% if add_generation_prompt %}assistant :{% endif %}")  # fmt: skip
MODEL_NAME = "tiny-chat"


def add_tokenizer(target, template: str | None = TEMPLATE) -> None:
    """Every id of the tiny vocabulary (211) is one word: w7 is token 7, so text equality is token equality."""
    import tokenizers

    vocab = {f"w{i}": i for i in range(211)}
    for word, i in {**SPECIALS, **ROLES}.items():
        del vocab[f"w{i}"]
        vocab[word] = i
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(list(SPECIALS))
    tok.save(str(target / "tokenizer.json"))
    config = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    if template is not None:
        config["chat_template"] = template
    (target / "tokenizer_config.json").write_text(json.dumps(config))
    model_config = json.loads((target / "config.json").read_text())
    model_config.update(bos_token_id=1, eos_token_id=2)
    (target / "config.json").write_text(json.dumps(model_config))


@pytest.fixture(scope="session")
def chat_checkpoint(tmp_path_factory):
    target = write_tiny_checkpoint("llama", tmp_path_factory.mktemp("serve_llama"))
    add_tokenizer(target)
    return target


@pytest.fixture(scope="session")
def bare_checkpoint(tmp_path_factory, chat_checkpoint):
    """The same checkpoint without a chat template."""
    target = tmp_path_factory.mktemp("serve_bare") / "model"
    shutil.copytree(chat_checkpoint, target)
    add_tokenizer(target, template=None)
    return target


ENGINE = dict(dtype="float32", platform="cpu", max_model_len=128, kv_cache_bytes=16 << 20)


class Server:
    def __init__(self, model, **options) -> None:
        import uvicorn

        from tessera.chat import load_chat_template
        from tessera.llm import make_config
        from tessera.serve.app import build_app
        from tessera.serve.core_client import CoreClient
        from tessera.serve.server import DrainingServer

        engine_options = {**ENGINE, **options.pop("engine", {})}
        self.core = CoreClient.start_process(make_config(model=str(model), **engine_options), timeout=120)
        app = build_app(self.core, MODEL_NAME, load_chat_template(model), **options)
        self.app = app
        self.server = DrainingServer(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        until = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < until, "the server did not start"
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"

    def client(self, api_key: str = "unused", **kwargs):
        import openai

        return openai.OpenAI(base_url=self.base_url + "/v1", api_key=api_key, max_retries=0, **kwargs)

    def async_client(self, **kwargs):
        import openai

        return openai.AsyncOpenAI(base_url=self.base_url + "/v1", api_key="unused", max_retries=0, **kwargs)

    @property
    def state(self):
        return self.app.state.serve

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        assert not self.thread.is_alive(), "the server did not stop"
        assert not self.core.alive(), "the engine core did not stop"


@pytest.fixture(scope="session")
def server(chat_checkpoint):
    s = Server(chat_checkpoint)
    yield s
    s.stop()


@pytest.fixture(scope="session")
def reference(chat_checkpoint):
    """The offline API on the same checkpoint: the oracle for greedy outputs."""
    from tessera import LLM

    return LLM(str(chat_checkpoint), **ENGINE)


def metric(text: str, name: str) -> float:
    """The value of the first sample of ``tessera:NAME`` in a Prometheus text page."""
    for line in text.splitlines():
        if line.startswith(f"tessera:{name}{{") or line.startswith(f"tessera:{name} "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric tessera:{name} in\n{text}")
