"""LangChain's standard input blocks in each provider's documented format, or refused before sending.

Shapes checked against each API's documentation: OpenAI chat-completions content parts
(``image_url``, ``file`` with ``file_data`` / ``file_id``, ``input_audio``), Mistral chunks
(``image_url``, ``document_url``, ``file``, ``input_audio``), Anthropic ``image`` /
``document`` blocks with ``base64`` / ``url`` / ``file`` / ``text`` sources, Ollama's
``images`` list. Requests go to real HTTP servers on loopback, so a refusal is proven by
the server having received nothing.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from langchain_multigateway.chat_models._anthropic_format import messages_to_anthropic
from langchain_multigateway.chat_models._input_blocks import UnsupportedInputBlockError, input_block
from langchain_multigateway.chat_models._mistral_format import messages_to_mistral
from langchain_multigateway.chat_models._ollama_format import messages_to_ollama
from langchain_multigateway.chat_models._openai_format import messages_to_openai
from langchain_multigateway.chat_models.anthropic import AnthropicChatModel
from langchain_multigateway.chat_models.ollama import OllamaChatModel
from langchain_multigateway.chat_models.openai import OpenAIChatModel
from langchain_multigateway.errors import InvalidRequestError
from langchain_multigateway.routing import Deployment, NoDeploymentAvailableError, RoutingChatModel
from tests.loopback import Reply, chat_completion, serve

PDF = base64.b64encode(b"%PDF-1.4 a tiny document").decode()
WAV = base64.b64encode(b"RIFF....WAVEfmt ").decode()
PDF_DATA_URL = f"data:application/pdf;base64,{PDF}"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()

PDF_BLOCK = {"type": "file", "base64": PDF, "mime_type": "application/pdf", "filename": "report.pdf"}
PDF_URL = {"type": "file", "url": "https://example.com/report.pdf", "mime_type": "application/pdf"}
PDF_ID = {"type": "file", "file_id": "file-abc123"}
AUDIO = {"type": "audio", "base64": WAV, "mime_type": "audio/wav"}
IMAGE_URL = {"type": "image", "url": "https://example.com/cat.png"}
IMAGE_B64 = {"type": "image", "base64": PNG, "mime_type": "image/png"}
NOTES = {"type": "text-plain", "text": "meeting notes", "mime_type": "text/plain", "title": "notes.txt"}
NOTES_B64 = {"type": "text-plain", "base64": base64.b64encode(b"caf\xc3\xa9").decode(), "mime_type": "text/plain"}
VIDEO = {"type": "video", "url": "https://example.com/clip.mp4", "mime_type": "video/mp4"}


def ask(*blocks: dict[str, Any]) -> HumanMessage:
    return HumanMessage(content=[{"type": "text", "text": "Look at this."}, *blocks])


# ---------------------------------------------------------------------- the shapes each API documents
def test_openai_chat_completions_parts() -> None:
    parts = messages_to_openai([ask(PDF_BLOCK, PDF_ID, AUDIO, IMAGE_URL, IMAGE_B64, NOTES)])[0]["content"]
    assert parts[1] == {
        "type": "file",
        "file": {"file_data": f"data:application/pdf;base64,{PDF}", "filename": "report.pdf"},
    }
    assert parts[2] == {"type": "file", "file": {"file_id": "file-abc123"}}
    assert parts[3] == {"type": "input_audio", "input_audio": {"data": WAV, "format": "wav"}}
    assert parts[4] == {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    assert parts[5] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
    assert parts[6] == {"type": "text", "text": "notes.txt\n\nmeeting notes"}


def test_mistral_chunks() -> None:
    parts = messages_to_mistral([ask(PDF_BLOCK, PDF_URL, PDF_ID, AUDIO, IMAGE_URL)])[0]["content"]
    pdf_url = f"data:application/pdf;base64,{PDF}"
    assert parts[1] == {"type": "document_url", "document_url": pdf_url, "document_name": "report.pdf"}
    assert parts[2] == {"type": "document_url", "document_url": "https://example.com/report.pdf"}
    assert parts[3] == {"type": "file", "file_id": "file-abc123"}
    assert parts[4] == {"type": "input_audio", "input_audio": WAV}
    assert parts[5] == {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}


def test_anthropic_blocks_keep_cache_control() -> None:
    marked = {**PDF_BLOCK, "cache_control": {"type": "ephemeral"}}
    _, turns = messages_to_anthropic([ask(marked, PDF_URL, PDF_ID, IMAGE_B64, NOTES)])
    blocks = turns[0]["content"]
    assert blocks[1] == {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
        "title": "report.pdf",
        "cache_control": {"type": "ephemeral"},
    }
    assert blocks[2] == {"type": "document", "source": {"type": "url", "url": "https://example.com/report.pdf"}}
    assert blocks[3] == {"type": "document", "source": {"type": "file", "file_id": "file-abc123"}}
    assert blocks[4] == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    assert blocks[5] == {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": "meeting notes"},
        "title": "notes.txt",
    }


def test_ollama_images_and_inlined_text() -> None:
    sent = messages_to_ollama([ask(IMAGE_B64, NOTES_B64)])[0]
    assert sent["images"] == [PNG]
    assert sent["content"] == "Look at this.café"


def test_legacy_v0_blocks_still_convert() -> None:
    v0 = {"type": "file", "source_type": "base64", "data": PDF, "mime_type": "application/pdf"}
    assert input_block("anthropic", v0)["source"] == {"type": "base64", "media_type": "application/pdf", "data": PDF}
    assert input_block("openai", {"type": "file", "source_type": "id", "id": "file-1"}) == {
        "type": "file",
        "file": {"file_id": "file-1"},
    }


# ---------------------------------------------------------------------- refused, naming the block and the provider
REFUSED = [
    ("openai", PDF_URL, "'file' content block given as url cannot be sent to openai"),
    ("openai", VIDEO, "'video' content block given as url cannot be sent to openai"),
    (
        "openai",
        {"type": "audio", "base64": WAV, "mime_type": "audio/ogg"},
        "wav or mp3 only (mime_type audio/wav or audio/mpeg), not 'audio/ogg'",
    ),
    ("anthropic", AUDIO, "an 'audio' content block given as base64 cannot be sent to anthropic"),
    ("mistral", VIDEO, "'video' content block given as url cannot be sent to mistral"),
    ("ollama", PDF_BLOCK, "'file' content block given as base64 cannot be sent to ollama"),
    ("ollama", IMAGE_URL, "'image' content block given as url cannot be sent to ollama"),
]


@pytest.mark.parametrize(("provider", "block", "said"), REFUSED, ids=[f"{p}-{b['type']}" for p, b, _ in REFUSED])
def test_unsupported_blocks_are_refused_by_name(provider: str, block: dict[str, Any], said: str) -> None:
    convert = {
        "openai": messages_to_openai,
        "mistral": messages_to_mistral,
        "ollama": messages_to_ollama,
        "anthropic": messages_to_anthropic,
    }[provider]
    with pytest.raises(UnsupportedInputBlockError) as info:
        convert([ask(block)])
    error = info.value
    assert isinstance(error, InvalidRequestError)
    assert isinstance(error, ValueError)  # what the format modules' refusals always were
    assert said in str(error)
    assert error.provider == provider
    assert error.retryable is False


def test_a_provider_refuses_before_sending_anything() -> None:
    with serve(Reply(body=chat_completion("never"))) as (url, script):
        llm = OpenAIChatModel(model="gpt-4o", base_url=url, api_key="k")
        with pytest.raises(UnsupportedInputBlockError, match="takes file blocks as base64, file_id only"):
            llm.invoke([ask(PDF_URL)])
        ollama = OllamaChatModel(model="llava", base_url=url.removesuffix("/v1"))
        with pytest.raises(UnsupportedInputBlockError, match="ollama"):
            ollama.invoke([ask(AUDIO)])
    assert script.requests == []


def test_a_pdf_is_sent_as_openai_documents_it() -> None:
    with serve(Reply(body=chat_completion("a report"))) as (url, script):
        OpenAIChatModel(model="gpt-4o", base_url=url, api_key="k").invoke([ask(PDF_BLOCK)])
    part = script.requests[0]["body"]["messages"][0]["content"][1]
    assert part == {
        "type": "file",
        "file": {"file_data": f"data:application/pdf;base64,{PDF}", "filename": "report.pdf"},
    }


# ---------------------------------------------------------------------- the router skips who cannot take it
def test_router_fails_over_to_a_deployment_that_takes_the_block() -> None:
    with serve(Reply(body=chat_completion("read it"))) as (url, script):
        router = RoutingChatModel(
            deployments=[
                Deployment(model=OllamaChatModel(model="llava", base_url=url.removesuffix("/v1")), name="local"),
                Deployment(model=OpenAIChatModel(model="gpt-4o", base_url=url, api_key="k"), name="cloud", priority=1),
            ]
        )
        answer = router.invoke([ask(PDF_BLOCK)])
        assert answer.response_metadata["deployment"] == "cloud"
        assert [r["path"] for r in script.requests] == ["/v1/chat/completions"]  # Ollama was never asked


def test_router_refuses_when_no_deployment_takes_the_block() -> None:
    with serve(Reply(body=chat_completion("never"))) as (url, script):
        router = RoutingChatModel(
            deployments=[
                Deployment(model=OllamaChatModel(model="llava", base_url=url.removesuffix("/v1")), name="local"),
                Deployment(model=AnthropicChatModel(model="claude-sonnet-4-5", base_url=url, api_key="k"), name="c"),
            ]
        )
        with pytest.raises(NoDeploymentAvailableError) as info:
            router.invoke([ask(AUDIO)])
    assert info.value.excluded == {
        "local": "ollama does not take 'audio' content blocks",
        "c": "does not accept audio inputs (profile audio_inputs=False)",
    }
    assert script.requests == []


def test_a_models_profile_excludes_it_too() -> None:
    """gpt-3.5-turbo's profile says image_inputs=False: an image goes to the model that sees."""
    with serve(Reply(body=chat_completion("a cat"))) as (url, script):
        router = RoutingChatModel(
            deployments=[
                Deployment(model=OpenAIChatModel(model="gpt-3.5-turbo", base_url=url, api_key="k"), name="old"),
                Deployment(model=OpenAIChatModel(model="gpt-4o", base_url=url, api_key="k"), name="new", priority=1),
            ]
        )
        assert router.invoke([ask(IMAGE_URL)]).response_metadata["deployment"] == "new"
        assert script.requests[0]["body"]["model"] == "gpt-4o"
