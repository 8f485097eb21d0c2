"""LangChain's standard input blocks (image, file, audio, video, text-plain) in each provider's format.

One table says what each provider's API takes, by block type and by where the data
is (``base64``, ``url``, a provider ``file_id``, inline ``text``); anything else is
refused *before sending* with :class:`UnsupportedInputBlockError`, naming the block
type and the provider, never passed through for the API to reject with a 400.

======================  ==========================  ==================  ==========================  ===============
block                   openai (chat completions)   mistral             anthropic (messages)        ollama (/api/chat)
======================  ==========================  ==================  ==========================  ===============
image                   url, base64                 url, base64         url, base64, file_id        base64
file (PDF)              base64, file_id             url, base64,        url, base64, file_id        —
                                                    file_id             (``document``)
audio                   base64 (wav, mp3)           base64, url         —                           —
video                   —                           —                   —                           —
text-plain              text, base64 (inlined       text, base64        text, base64 (a text        text, base64
                        as a text part)             (a text chunk)      ``document``)
======================  ==========================  ==================  ==========================  ===============

Sources: OpenAI's chat-completions content parts (``image_url``, ``file`` with
``file_data``/``file_id``, ``input_audio``), computed by langchain-core's own
``convert_to_openai_data_block``; Mistral's chunk types (``image_url``,
``document_url``, ``file``, ``input_audio``, as the mistralai SDK's models declare
them); Anthropic's ``image`` and ``document`` blocks with ``base64`` / ``url`` /
``file`` / ``text`` sources; Ollama's ``images`` list (raw base64 only).
A model whose profile says it cannot take a kind (``image_inputs`` / ``pdf_inputs``
/ ``audio_inputs`` / ``video_inputs`` False) is refused the same way; the router
reads :func:`block_exclusion` to skip such deployments and fail over to one that can.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from langchain_core.messages import BaseMessage

from langchain_multigateway.errors import InvalidRequestError

__all__ = [
    "INPUT_BLOCK_TYPES",
    "UnsupportedInputBlockError",
    "block_exclusion",
    "input_block",
    "input_kinds",
    "plain_text",
]

INPUT_BLOCK_TYPES = frozenset({"image", "file", "audio", "video", "text-plain"})
"""LangChain's standard data-block types (``langchain_core.messages.content``)."""

BASE64, URL, FILE_ID, TEXT = "base64", "url", "file_id", "text"

SUPPORT: dict[str, dict[str, frozenset[str]]] = {
    "openai": {
        "image": frozenset({URL, BASE64}),
        "file": frozenset({BASE64, FILE_ID}),
        "audio": frozenset({BASE64}),
        "text-plain": frozenset({TEXT, BASE64}),
    },
    "mistral": {
        "image": frozenset({URL, BASE64}),
        "file": frozenset({URL, BASE64, FILE_ID}),
        "audio": frozenset({BASE64, URL}),
        "text-plain": frozenset({TEXT, BASE64}),
    },
    "anthropic": {
        "image": frozenset({URL, BASE64, FILE_ID}),
        "file": frozenset({URL, BASE64, FILE_ID}),
        "text-plain": frozenset({TEXT, BASE64}),
    },
    "ollama": {
        "image": frozenset({BASE64}),
        "text-plain": frozenset({TEXT, BASE64}),
    },
}
"""Per provider: block type → the sources its API takes (absent: the type is refused)."""

_PROFILE_FLAG = {"image": "image_inputs", "file": "pdf_inputs", "audio": "audio_inputs", "video": "video_inputs"}
_OPENAI_AUDIO = {"wav": "wav", "x-wav": "wav", "wave": "wav", "vnd.wave": "wav", "mp3": "mp3", "mpeg": "mp3"}
"""An audio MIME subtype → the ``input_audio.format`` OpenAI takes (only ``wav`` and ``mp3``)."""


class UnsupportedInputBlockError(InvalidRequestError, ValueError):
    """A content block the provider's API cannot take (refused before anything was sent).

    An ``InvalidRequestError`` (LangChain's ``ModelInvalidRequestError``) and, as the format
    modules' refusals always were, a ``ValueError``.

    ``block_type`` and ``source`` say what was refused; ``provider`` where. Send the
    content another way (see the message), or route the call to a deployment that takes it.
    """

    def __init__(
        self, block_type: str, source: str | None, provider: str, *, model: str | None = None, hint: str | None = None
    ) -> None:
        self.block_type = block_type
        self.source = source
        takes = SUPPORT.get(provider, {}).get(block_type)
        given = f" given as {source}" if source else ""
        if hint is None and takes:
            hint = f"{provider} takes {block_type} blocks as {', '.join(sorted(takes))} only"
        elif hint is None:
            kinds = sorted(SUPPORT.get(provider, {}))
            hint = f"{provider} takes these input blocks: {', '.join(kinds) or 'none'}"
        article = "an" if block_type[:1] in "aeiou" else "a"
        msg = f"{article} {block_type!r} content block{given} cannot be sent to {provider}: {hint}"
        super().__init__(msg, provider=provider, model=model, retryable=False)


# ---------------------------------------------------------------------- reading a block
def source_of(block: Mapping[str, Any]) -> str | None:
    """Where the block's data is: ``base64``, ``url``, ``file_id`` or ``text`` (v1 and v0 shapes)."""
    legacy = block.get("source_type")  # LangChain v0: {"source_type": "base64" | "url" | "id" | "text", ...}
    if legacy == "id":
        return FILE_ID if isinstance(block.get("id"), str) else None
    if legacy in (BASE64, URL, TEXT):
        return str(legacy)
    if isinstance(block.get("base64"), str):
        return BASE64
    url = block.get("url")
    if isinstance(url, str):
        return BASE64 if _data_url(url) is not None else URL
    if isinstance(block.get("file_id"), str):
        return FILE_ID
    if isinstance(block.get("text"), str):
        return TEXT
    return None


def _data_url(url: str) -> tuple[str, str] | None:
    """``(mime_type, base64 data)`` of a ``data:`` URL, else None."""
    if url.startswith("data:") and ";base64," in url:
        head, data = url[5:].split(";base64,", 1)
        return head, data
    return None


def _base64(block: Mapping[str, Any]) -> tuple[str, str]:
    """The block's ``(mime_type, base64 data)``."""
    data = block.get("base64")
    if not isinstance(data, str):
        data = block.get("data")
    mime = block.get("mime_type")
    if not isinstance(data, str):
        found = _data_url(str(block.get("url") or ""))
        if found is None:
            msg = f"a {block.get('type')!r} block has no base64 data"
            raise ValueError(msg)
        mime = mime or found[0]
        data = found[1]
    _check_base64(str(block.get("type")), data)
    return str(mime or ""), data


_PROBE = 4096
"""Characters of base64 decoded strictly at each end of the data (a multiple of 4)."""


def _check_base64(kind: str, data: str) -> None:
    """Refuse data that is not base64 before it is uploaded for the API's 400.

    Its length and both ends are checked strictly: that catches raw bytes, a path or URL put
    where base64 belongs, or a cut upload, in constant time. Decoding all of a large file
    would hold the event loop for tens of milliseconds per try.
    """
    try:
        if len(data) % 4:
            raise binascii.Error(f"{len(data)} characters, not a multiple of 4")
        binascii.a2b_base64(data[:_PROBE], strict_mode=True)
        if len(data) > _PROBE:
            binascii.a2b_base64(data[-_PROBE:], strict_mode=True)
    except binascii.Error as exc:
        msg = f"a {kind!r} block's base64 data is not valid base64 ({exc}); send it base64-encoded"
        raise ValueError(msg) from None


def _file_id(block: Mapping[str, Any]) -> str:
    return str(block["id"] if block.get("source_type") == "id" else block["file_id"])


def _filename(block: Mapping[str, Any]) -> str | None:
    for holder in (block, block.get("extras"), block.get("metadata")):
        if isinstance(holder, Mapping) and isinstance(holder.get("filename"), str):
            return str(holder["filename"])
    return None


def plain_text(block: Mapping[str, Any], *, titled: bool = True) -> str:
    """A ``text-plain`` block's text (decoded from base64 when given so), headed by its title if ``titled``."""
    text = block.get("text")
    if not isinstance(text, str):
        _, data = _base64(block)
        try:
            text = base64.b64decode(data, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            msg = f"a text-plain block's base64 data is not UTF-8 text: {exc}"
            raise ValueError(msg) from exc
    title = block.get("title")
    return f"{title}\n\n{text}" if titled and isinstance(title, str) and title else text


def _checked(provider: str, block: Mapping[str, Any]) -> tuple[str, str | None]:
    kind = str(block.get("type"))
    source = source_of(block)
    if source is None or source not in SUPPORT.get(provider, {}).get(kind, frozenset()):
        raise UnsupportedInputBlockError(kind, source, provider)
    return kind, source


# ---------------------------------------------------------------------- each provider's shape
def input_block(provider: str, block: Mapping[str, Any]) -> dict[str, Any]:
    """``block`` (a standard data block) in ``provider``'s content format, or :class:`UnsupportedInputBlockError`."""
    kind, source = _checked(provider, block)
    if kind == "text-plain" and provider != "anthropic":
        return {"type": "text", "text": plain_text(block)}
    if provider == "openai":
        return _openai(kind, source, block)
    if provider == "mistral":
        return _mistral(kind, source, block)
    if provider == "anthropic":
        return _anthropic(kind, source, block)
    msg = f"no {provider} content-part shape for {kind!r} blocks (Ollama sends images apart from the text)"
    raise UnsupportedInputBlockError(kind, source, provider) from ValueError(msg)


def _openai(kind: str, source: str | None, block: Mapping[str, Any]) -> dict[str, Any]:
    from langchain_core.messages.block_translators.openai import convert_to_openai_data_block

    if source == BASE64:
        mime, data = _base64(block)
        if kind == "audio" and openai_audio_format(mime) is None:
            raise UnsupportedInputBlockError("audio", source, "openai", hint=_OPENAI_AUDIO_HINT.format(mime=mime))
        normal: dict[str, Any] = {"type": kind, "base64": data, "mime_type": mime or _DEFAULT_MIME[kind]}
        filename = _filename(block)
        if kind == "file":
            normal["filename"] = filename or "document.pdf"  # OpenAI asks for a name; LangChain would warn
    elif source == URL:
        normal = {"type": kind, "url": block["url"]}
    else:
        normal = {"type": kind, "file_id": _file_id(block)}
    out = convert_to_openai_data_block(normal)
    if kind == "audio":  # langchain-core sends the MIME subtype as it is ("mpeg", "x-wav"): OpenAI takes two names
        out["input_audio"]["format"] = openai_audio_format(normal["mime_type"])
    detail = block.get("detail") or (block.get("extras") or {}).get("detail")
    if kind == "image" and detail:
        out["image_url"]["detail"] = detail
    return out


_DEFAULT_MIME = {"image": "image/png", "file": "application/pdf", "audio": "audio/wav"}
_OPENAI_AUDIO_HINT = "openai takes audio as wav or mp3 only (mime_type audio/wav or audio/mpeg), not {mime!r}"


def openai_audio_format(mime: str | None) -> str | None:
    """OpenAI's ``input_audio.format`` for an audio MIME type (no type: ``wav``), or None when it takes none such."""
    if not mime:
        return "wav"
    return _OPENAI_AUDIO.get(mime.split(";", 1)[0].strip().lower().rsplit("/", 1)[-1])


def mime_of(block: Mapping[str, Any]) -> str | None:
    """The block's MIME type: its ``mime_type``, else a ``data:`` URL's."""
    mime = block.get("mime_type")
    if isinstance(mime, str) and mime:
        return mime
    url = block.get("url")
    found = _data_url(url) if isinstance(url, str) else None
    return found[0] or None if found is not None else None


def _mistral(kind: str, source: str | None, block: Mapping[str, Any]) -> dict[str, Any]:
    if source == FILE_ID:
        return {"type": "file", "file_id": _file_id(block)}
    if source == BASE64:
        mime, data = _base64(block)
        if kind == "audio":
            return {"type": "input_audio", "input_audio": data}
        url = f"data:{mime or _DEFAULT_MIME[kind]};base64,{data}"
    else:
        url = str(block["url"])
    if kind == "image":
        return {"type": "image_url", "image_url": {"url": url}}
    if kind == "audio":
        return {"type": "input_audio", "input_audio": url}
    out = {"type": "document_url", "document_url": url}
    name = _filename(block)
    if name:
        out["document_name"] = name
    return out


def _anthropic(kind: str, source: str | None, block: Mapping[str, Any]) -> dict[str, Any]:
    wire = "image" if kind == "image" else "document"
    if kind == "text-plain":
        text = plain_text(block, titled=False)  # the title goes in the document's own field
        anthropic_source: dict[str, Any] = {"type": "text", "media_type": "text/plain", "data": text}
    elif source == BASE64:
        mime, data = _base64(block)
        anthropic_source = {"type": "base64", "media_type": mime or _DEFAULT_MIME[kind], "data": data}
    elif source == URL:
        anthropic_source = {"type": "url", "url": block["url"]}
    else:
        anthropic_source = {"type": "file", "file_id": _file_id(block)}
    out: dict[str, Any] = {"type": wire, "source": anthropic_source}
    title = block.get("title") or _filename(block)
    if wire == "document" and isinstance(title, str):
        out["title"] = title
    if block.get("cache_control"):  # a prompt-cache marker stays on the block it marks
        out["cache_control"] = block["cache_control"]
    return out


def ollama_input(block: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """An Ollama message's share of ``block``: ``(text, None)`` or ``(None, base64 image)``."""
    kind, _ = _checked("ollama", block)
    if kind == "text-plain":
        return plain_text(block), None
    return None, _base64(block)[1]


# ---------------------------------------------------------------------- the router's question
def input_kinds(messages: Sequence[BaseMessage]) -> set[tuple[str, str | None, str | None]]:
    """The ``(block type, source, MIME type)`` of every standard data block in ``messages``."""
    found: set[tuple[str, str | None, str | None]] = set()
    for message in messages:
        content = message.content
        if isinstance(content, str):
            continue
        for block in content:
            if isinstance(block, dict) and block.get("type") in INPUT_BLOCK_TYPES:
                kind = str(block["type"])
                found.add((kind, source_of(block), mime_of(block) if kind == "audio" else None))
    return found


def block_exclusion(
    kinds: Iterable[tuple[str, str | None, str | None]], provider: str | None, profile: Mapping[str, Any] | None
) -> str | None:
    """Why a model (``provider``'s, with ``profile``) cannot take blocks of these kinds, or None.

    ``provider`` None: a model of another package, judged by its profile alone.
    """
    for kind, source, mime in sorted(kinds, key=str):
        flag = _PROFILE_FLAG.get(kind)
        if flag is not None and profile and profile.get(flag) is False:
            return f"does not accept {kind} inputs (profile {flag}=False)"
        if provider is None or provider not in SUPPORT:
            continue
        takes = SUPPORT[provider].get(kind)
        if not takes:
            return f"{provider} does not take {kind!r} content blocks"
        if source not in takes:
            return f"{provider} takes {kind!r} blocks as {', '.join(sorted(takes))}, not {source}"
        if provider == "openai" and kind == "audio" and openai_audio_format(mime) is None:
            return _OPENAI_AUDIO_HINT.format(mime=mime)
    return None
