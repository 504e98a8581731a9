"""The OpenAI-compatible HTTP server: FastAPI routes over an AsyncLLM.

Routes: ``/v1/models``, ``/v1/completions``, ``/v1/chat/completions`` (``stream: true``
answers with server-sent events ``data: {...}`` ending in ``data: [DONE]``),
``/tokenize``, ``/detokenize``, ``/health``, ``/metrics`` (Prometheus). With an API key,
every ``/v1`` route wants ``Authorization: Bearer KEY``. Errors have OpenAI's shape.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tessera.chat import chat_prompt, require_template
from tessera.errors import ConfigError
from tessera.sampling_params import SamplingParams
from tessera.serve.async_engine import AsyncLLM
from tessera.serve.handlers import Job, ServerState, admit
from tessera.serve.metrics import Metrics
from tessera.serve.protocol import (
    ChatRequest,
    CompletionRequest,
    DetokenizeRequest,
    ServeError,
    TokenizeRequest,
    check_unimplemented,
    parse,
    to_sampling_params,
)

log = logging.getLogger("tessera.serve")
COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions


def build_app(engine, model_name: str, template=None, api_key: str | None = None, max_waiting: int | None = None,
              drain_timeout: float = 0.0) -> FastAPI:  # fmt: skip
    """The app over ``engine``: a started CoreClient (an engine-core process, or thread), or an LLMEngine (run
    in a thread). The app reads its outputs while it runs and stops it (draining, then aborting) at the end."""
    metrics = Metrics(model_name)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async_engine = AsyncLLM(engine, asyncio.get_running_loop(), on_finished=metrics.observe)
        app.state.serve = ServerState(async_engine, model_name, async_engine.model_dir, template, metrics, api_key,
                                      max_waiting)  # fmt: skip
        yield
        await async_engine.shutdown(drain_timeout)

    app = FastAPI(title="tessera", lifespan=lifespan)

    async def drain() -> None:
        """Stop the engine now (in-flight requests get ``drain_timeout`` seconds, then the rest are aborted and
        end with finish_reason "abort"): DrainingServer runs it when a shutdown starts, before it waits for the
        connections."""
        state = getattr(app.state, "serve", None)
        if state is not None:
            await state.engine.shutdown(drain_timeout)

    app.state.drain = drain

    @app.exception_handler(ServeError)
    async def _serve_error(request: Request, exc: ServeError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """No such route (404) or method (405): OpenAI's error shape too, naming the routes there are."""
        message = (f"{request.method} {request.url.path}: {exc.detail}; this server answers GET /v1/models, POST "
                   "/v1/completions, /v1/chat/completions, /tokenize, /detokenize, GET /health and /metrics")  # fmt: skip
        return JSONResponse(ServeError(exc.status_code, message).body(), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))  # fmt: skip

    @app.middleware("http")
    async def _auth(request: Request, call_next):
        if (
            api_key
            and request.url.path.startswith("/v1")
            and request.headers.get("authorization") != f"Bearer {api_key}"
        ):
            error = ServeError(401, "invalid API key: send the server's key as 'Authorization: Bearer KEY'",
                               code="invalid_api_key")  # fmt: skip
            return JSONResponse(error.body(), status_code=401)
        return await call_next(request)

    _routes(app)
    return app


def _state(request: Request) -> ServerState:
    return request.app.state.serve


async def _body(request: Request, model):
    raw = await request.body()
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ServeError(400, f"the request body is not valid JSON: {exc}") from None
    return parse(model, data)


def _check_model(state: ServerState, name: str | None) -> None:
    if name is not None and name != state.model_name:
        raise ServeError(404, f"the model {name!r} does not exist; this server serves {state.model_name!r}",
                         "model", "model_not_found")  # fmt: skip


def _completion_prompts(prompt) -> list:
    if isinstance(prompt, str):
        return [prompt]
    if not prompt:
        raise ServeError(400, "prompt is empty: give a string, a list of strings or token ids", "prompt")
    if isinstance(prompt[0], int):
        return [{"prompt_token_ids": prompt}]
    return [p if isinstance(p, str) else {"prompt_token_ids": p} for p in prompt]


def _chat_max_tokens(state: ServerState) -> int | None:
    """No max_tokens in a chat: the rest of the context (SamplingParams' own None where it means that)."""
    return None if SamplingParams.model_fields["max_tokens"].default is None else state.max_model_len


async def _sse(events: AsyncIterator[dict]) -> AsyncIterator[bytes]:
    encode = msgspec.json.encode  # compact JSON, a few times faster than json.dumps: one call per chunk
    try:
        async for event in events:
            yield b"data: " + encode(event) + b"\n\n"
    except ServeError as exc:
        yield b"data: " + encode(exc.body()) + b"\n\n"
    yield b"data: [DONE]\n\n"


async def _answer(request: Request, state: ServerState, job: Job, prompts: list, params) -> Response:
    streams = await admit(state, prompts, params, job.strict_max_tokens)
    if job.request.stream:  # a client that leaves ends the stream's iteration, which aborts its requests
        return StreamingResponse(_sse(job.chunks(streams)), media_type="text/event-stream")
    collect = asyncio.ensure_future(job.collect(streams))
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({collect, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not collect.done():  # the client left before its answer: nobody will read it
            collect.cancel()
            for stream in streams:
                stream.abort()
    if not collect.done() or collect.cancelled():
        return Response(status_code=499)  # nginx's "client closed request"; no client is there to read it
    return JSONResponse(collect.result())


async def _disconnected(request: Request) -> None:
    """Returns when the client closes its connection (the body was read already, so only that message is left)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _render_chat(state: ServerState, messages, add_generation_prompt: bool) -> dict:
    try:
        template = require_template(state.template, state.model_dir)
        return chat_prompt(template, state.tokenizer, messages, add_generation_prompt)
    except ConfigError as exc:
        raise ServeError(400, str(exc), "messages") from None


def _routes(app: FastAPI) -> None:
    _info_routes(app)
    _generation_routes(app)


def _info_routes(app: FastAPI) -> None:
    @app.get("/health")
    async def health(request: Request) -> Response:
        dead = _state(request).engine.dead
        if dead:
            return JSONResponse(ServeError(503, f"the engine is not running: {dead}").body(), status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        state = _state(request)
        return PlainTextResponse(
            state.metrics.render(state.engine.stats), media_type="text/plain; version=0.0.4"
        )

    @app.get("/v1/models")
    async def models(request: Request) -> dict:
        state = _state(request)
        card = {"id": state.model_name, "object": "model", "created": state.created, "owned_by": "tessera",
                "root": state.model_dir, "max_model_len": state.max_model_len,
                "vocab_size": state.engine.vocab_size}  # fmt: skip
        return {"object": "list", "data": [card]}

    @app.post("/tokenize")
    async def tokenize(request: Request) -> dict:
        state = _state(request)
        body = await _body(request, TokenizeRequest)
        _check_model(state, body.model)
        if (body.prompt is None) == (body.messages is None):
            raise ServeError(400, 'give exactly one of "prompt" and "messages"')
        if state.tokenizer is None:
            raise ServeError(400, "this checkpoint has no tokenizer")
        if body.messages is not None:
            tokens = _render_chat(state, body.messages, body.add_generation_prompt)["prompt_token_ids"]
        else:
            tokens = state.tokenizer.encode(body.prompt, add_special_tokens=body.add_special_tokens)
        return {"tokens": tokens, "count": len(tokens), "max_model_len": state.max_model_len}

    @app.post("/detokenize")
    async def detokenize(request: Request) -> dict:
        state = _state(request)
        body = await _body(request, DetokenizeRequest)
        _check_model(state, body.model)
        if state.tokenizer is None:
            raise ServeError(400, "this checkpoint has no tokenizer")
        vocab = state.engine.vocab_size
        bad = [t for t in body.tokens if not 0 <= t < vocab]
        if bad:
            raise ServeError(400, f"tokens must lie in [0, {vocab}), the vocabulary; got {bad[:8]}", "tokens")
        return {"prompt": state.tokenizer.decode(body.tokens)}


def _generation_routes(app: FastAPI) -> None:
    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        state = _state(request)
        body = await _body(request, CompletionRequest)
        _check_model(state, body.model)
        check_unimplemented(body)
        params = to_sampling_params(body, COMPLETIONS_DEFAULT_MAX_TOKENS)
        job = Job(state, body, getattr(params, "n", 1), chat=False)
        return await _answer(request, state, job, _completion_prompts(body.prompt), params)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        state = _state(request)
        body = await _body(request, ChatRequest)
        _check_model(state, body.model)
        check_unimplemented(body)
        params = to_sampling_params(body, _chat_max_tokens(state))
        prompt = _render_chat(state, body.messages, body.add_generation_prompt)
        job = Job(state, body, getattr(params, "n", 1), chat=True)
        return await _answer(request, state, job, [prompt], params)
