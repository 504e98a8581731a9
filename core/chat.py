"""Chat templates: found in a checkpoint (or given as a file) and rendered as transformers renders them.

The template comes from ``--chat-template FILE``, else the checkpoint's
``chat_template.jinja``, else ``tokenizer_config.json``'s ``chat_template`` (a string,
or a list of named templates of which ``default`` is taken). It is rendered in
jinja2's immutable sandbox with transformers' settings (``trim_blocks``,
``lstrip_blocks``, loop controls, ``raise_exception``, ``strftime_now``, a ``tojson``
that keeps non-ASCII) and the special tokens of ``tokenizer_config.json``
(``bos_token``, ``eos_token``, ...) as variables. The rendered text holds its own special
tokens, so it is encoded without adding any.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from tessera.errors import ConfigError
from tessera.tokenizer import check_text, read_tokenizer_config

ROLES_HELP = 'messages are [{"role": "system"|"user"|"assistant", "content": "..."}, ...]'


class ChatTemplateError(ConfigError):
    """No chat template, a template that does not compile, or one that refuses the messages."""


class ChatTemplate:
    def __init__(self, source: str, special_tokens: Mapping[str, str], origin: str) -> None:
        self.source, self.special_tokens, self.origin = source, dict(special_tokens), origin
        self._template = _compile(source, origin)

    def render(self, messages: Sequence[Mapping], add_generation_prompt: bool = True, **kwargs) -> str:
        import jinja2

        messages = checked_messages(messages)
        try:
            return self._template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                         **self.special_tokens, **kwargs)  # fmt: skip
        except jinja2.TemplateError as exc:
            raise ChatTemplateError(
                f"the chat template ({self.origin}) refused the messages: {exc}"
            ) from None


def checked_messages(messages) -> list[Mapping]:
    """``messages`` as the template gets them: each with a role, and content given as a list of parts (OpenAI's
    ``[{"type": "text", "text": ...}, ...]``) joined into one string, as for a text-only model; a part of any
    other type (an image, audio) is refused."""
    if not isinstance(messages, Sequence) or isinstance(messages, str) or not messages:
        raise ChatTemplateError(f"messages must be a non-empty list; {ROLES_HELP}")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or "role" not in m:
            raise ChatTemplateError(f"message {i} has no role; {ROLES_HELP}")
        if not isinstance(m["role"], str):
            raise ChatTemplateError(
                f"message {i}'s role must be a string, got {type(m['role']).__name__}; {ROLES_HELP}"
            )
        content = m.get("content")
        if isinstance(content, list):
            m = {**m, "content": _joined_text(i, content)}
        out.append(m)
    return out


def _joined_text(i: int, parts: list) -> str:
    texts = []
    for part in parts:
        kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
        if kind != "text" or not isinstance(part.get("text"), str):
            raise ChatTemplateError(f"message {i} has a content part of type {kind!r}: this model takes text only, "
                                    'so content is a string or a list of {"type": "text", "text": "..."} parts')  # fmt: skip
        texts.append(part["text"])
    return "\n".join(texts)


def load_chat_template(model_dir: str | Path, override: str | Path | None = None) -> ChatTemplate | None:
    """The checkpoint's chat template (or ``override``'s), or None when it has none."""
    model_dir = Path(model_dir)
    config = read_tokenizer_config(model_dir / "tokenizer_config.json")
    tokens = special_tokens(config)
    if override is not None:
        path = Path(override)
        if not path.is_file():
            raise ChatTemplateError(f"--chat-template {path}: no such file; give a Jinja template file")
        return ChatTemplate(_template_text(path), tokens, str(path))
    jinja_file = model_dir / "chat_template.jinja"
    if jinja_file.is_file():
        return ChatTemplate(_template_text(jinja_file), tokens, str(jinja_file))
    source = config.get("chat_template")
    if isinstance(source, list):  # named templates: [{"name": "default", "template": "..."}, ...]
        named = {t.get("name"): t.get("template") for t in source if isinstance(t, Mapping)}
        source = named.get("default")
    if isinstance(source, str) and source.strip():
        return ChatTemplate(source, tokens, f"{model_dir / 'tokenizer_config.json'} chat_template")
    return None


def _template_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ChatTemplateError(
            f"the chat template {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None


def require_template(template: ChatTemplate | None, model_dir: str | Path) -> ChatTemplate:
    if template is None:
        raise ChatTemplateError(f"{model_dir} has no chat template (no chat_template.jinja and no chat_template "
                                "in tokenizer_config.json); start the server with --chat-template FILE, pass "
                                "chat_template= to LLM.chat, or use completions with a plain prompt")  # fmt: skip
    return template


def special_tokens(config: Mapping) -> dict[str, str]:
    """``bos_token``, ``eos_token``, ... of tokenizer_config.json as strings (AddedToken dicts unwrapped)."""
    out = {}
    for key in ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token"):
        value = config.get(key)
        if isinstance(value, Mapping):
            value = value.get("content")
        out[key] = value if isinstance(value, str) else ""
    return out


@lru_cache(maxsize=16)
def _compile(source: str, origin: str):
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(
            x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
        )

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(source)
    except jinja2.TemplateError as exc:
        raise ChatTemplateError(f"the chat template ({origin}) does not compile: {exc}") from None


def chat_prompt(template: ChatTemplate, tokenizer, messages, add_generation_prompt: bool = True) -> dict:
    """The engine prompt for ``messages``: {"prompt": rendered text, "prompt_token_ids": its ids}."""
    text = template.render(messages, add_generation_prompt=add_generation_prompt)
    if tokenizer is None:
        raise ChatTemplateError("this checkpoint has no tokenizer, so a rendered chat cannot be encoded")
    check_text(text, "the rendered chat", "messages")
    return {"prompt": text, "prompt_token_ids": tokenizer.encode(text, add_special_tokens=False)}
