"""Audio OpenAI cannot take is refused or routed around before anything is sent.

OpenAI's chat-completions ``input_audio.format`` is ``wav`` or ``mp3`` only; langchain-core's
converter sends the MIME subtype as it is (``mpeg``, ``x-wav``), which OpenAI rejects.
The router's eligibility reads the MIME type too, so an OGG clip goes to a deployment
that takes it (here Mistral's Voxtral, served by a real HTTP server on loopback).
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from langchain_multigateway.chat_models._input_blocks import UnsupportedInputBlockError, input_block
from langchain_multigateway.chat_models.mistral import MistralChatModel
from langchain_multigateway.chat_models.openai import OpenAIChatModel
from langchain_multigateway.routing import Deployment, NoDeploymentAvailableError, RoutingChatModel
from tests.loopback import Reply, chat_completion, serve

OGG = base64.b64encode(b"OggS\x00\x02 a tiny clip").decode()
OGG_BLOCK = {"type": "audio", "base64": OGG, "mime_type": "audio/ogg"}


def ask(block: dict[str, Any]) -> HumanMessage:
    return HumanMessage(content=[{"type": "text", "text": "Transcribe this."}, block])


@pytest.mark.parametrize(
    ("mime", "wire"), [("audio/mpeg", "mp3"), ("audio/mp3", "mp3"), ("audio/x-wav", "wav"), ("audio/wav", "wav")]
)
def test_openai_gets_one_of_its_two_format_names(mime: str, wire: str) -> None:
    part = input_block("openai", {"type": "audio", "base64": OGG, "mime_type": mime})
    assert part == {"type": "input_audio", "input_audio": {"data": OGG, "format": wire}}


@pytest.mark.parametrize("block", [OGG_BLOCK, {"type": "audio", "url": f"data:audio/ogg;base64,{OGG}"}])
def test_openai_refuses_ogg_naming_the_formats_it_takes(block: dict[str, Any]) -> None:
    with pytest.raises(UnsupportedInputBlockError, match=r"wav or mp3 only.*audio/ogg"):
        input_block("openai", block)


def test_router_sends_ogg_to_the_deployment_that_takes_it() -> None:
    with serve(Reply(body=chat_completion("heard it"))) as (url, script):
        router = RoutingChatModel(
            deployments=[
                Deployment(model=OpenAIChatModel(model="gpt-4o-audio-preview", base_url=url, api_key="k"), name="oa"),
                Deployment(
                    model=MistralChatModel(
                        model="voxtral-small-latest", server_url=url.removesuffix("/v1"), api_key="k"
                    ),
                    name="vox",
                    priority=1,
                ),
            ]
        )
        answer = router.invoke([ask(OGG_BLOCK)])
        assert answer.response_metadata["deployment"] == "vox"
        assert len(script.requests) == 1
        assert script.requests[0]["body"]["model"] == "voxtral-small-latest"


def test_router_refuses_ogg_when_only_openai_could_take_audio() -> None:
    with serve(Reply(body=chat_completion("never"))) as (url, script):
        router = RoutingChatModel(
            deployments=[Deployment(model=OpenAIChatModel(model="gpt-4o-audio-preview", base_url=url, api_key="k"))]
        )
        with pytest.raises(NoDeploymentAvailableError, match="wav or mp3 only"):
            router.invoke([ask(OGG_BLOCK)])
    assert script.requests == []
