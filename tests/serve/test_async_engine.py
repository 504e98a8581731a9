"""AsyncLLM on its own: deltas that add up to the offline output, abort, shutdown, and LLM.chat."""

from __future__ import annotations

import asyncio

import pytest

from tessera.errors import ConfigError

from .conftest import ENGINE


@pytest.fixture(scope="module")
def engine(chat_checkpoint):
    from tessera.engine.llm_engine import LLMEngine
    from tessera.llm import make_config

    return LLMEngine(make_config(model=str(chat_checkpoint), **ENGINE))


def test_generate_streams_deltas_that_add_up(engine, reference):
    from tessera.serve.async_engine import AsyncLLM

    params = {"temperature": 0.0, "max_tokens": 10, "ignore_eos": True}
    want = reference.generate([[9, 8, 7]], params, use_tqdm=False)[0].outputs[0]

    async def run():
        llm = AsyncLLM(engine)
        outs = [out async for out in llm.generate([9, 8, 7], params, "a")]
        with pytest.raises(ConfigError, match="max_model_len"):
            await llm.add_request(list(range(3, 200)), params)  # a bad request raises at admission
        await llm.shutdown()
        return outs

    outs = asyncio.run(run())
    assert [t for o in outs for t in o.outputs[0].token_ids] == want.token_ids
    assert "".join(o.outputs[0].text for o in outs) == want.text
    assert [o.finished for o in outs] == [False] * (len(outs) - 1) + [True] and len(outs) > 1
    assert engine.requests == {} and not engine.has_unfinished()


def test_abort_and_shutdown_free_everything(engine):
    from tessera.serve.async_engine import AsyncLLM, EngineDeadError

    long = {"temperature": 0.0, "max_tokens": 100, "ignore_eos": True}

    async def run():
        llm = AsyncLLM(engine)
        left = llm.generate([5, 6], long, "leaves")
        await left.__anext__()
        await left.aclose()  # the caller stops iterating: the request is aborted
        kept = await llm.add_request([7, 8], long, "kept")
        first = await kept.__anext__()
        await llm.shutdown()  # in-flight work is aborted, the stream ends with it
        rest = [out async for out in kept]
        with pytest.raises(EngineDeadError):
            await llm.add_request([1], long)
        return first, rest

    first, rest = asyncio.run(run())
    assert not first.finished and rest[-1].finished and rest[-1].outputs[0].finish_reason == "abort"
    assert engine.requests == {} and engine.kv.pool.num_free == engine.kv.pool.num_blocks


def test_llm_chat_renders_the_template(reference):
    messages = [{"role": "user", "content": "w40 w41"}]
    out = reference.chat(messages, {"temperature": 0.0, "max_tokens": 4}, use_tqdm=False)[0]
    assert out.prompt == "<s>user : w40 w41 assistant :"
    assert out.prompt_token_ids == [1, 4, 6, 40, 41, 5, 6]
    same = reference.generate([{"prompt_token_ids": out.prompt_token_ids}], {"temperature": 0.0, "max_tokens": 4},
                              use_tqdm=False)[0]  # fmt: skip
    assert same.outputs[0].token_ids == out.outputs[0].token_ids
    two = reference.chat([messages, messages + [{"role": "assistant", "content": "w9"}]], use_tqdm=False)
    assert len(two) == 2 and two[1].prompt_token_ids[-5:] == [5, 6, 9, 5, 6]


def test_llm_chat_template_file_and_missing_template(bare_checkpoint, tmp_path):
    from tessera import LLM

    llm = LLM(str(bare_checkpoint), **ENGINE)
    with pytest.raises(ConfigError, match="has no chat template"):
        llm.chat([{"role": "user", "content": "w1"}])
    template = tmp_path / "t.jinja"
    template.write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    out = llm.chat(
        [{"role": "user", "content": "w7 w8"}], {"max_tokens": 2}, use_tqdm=False, chat_template=template
    )
    assert out[0].prompt_token_ids == [7, 8]
    template.write_text("{{ raise_exception('only user turns') }}")
    with pytest.raises(ConfigError, match="refused the messages: only user turns"):
        llm.chat([{"role": "user", "content": "w7"}], chat_template=template)
    with pytest.raises(ConfigError, match="got no conversation"):
        llm.chat([], chat_template=template)
