"""Malformed standard blocks are refused with the typed error, never a bare KeyError or a 400 later."""

from __future__ import annotations

from typing import Any

import pytest

from langchain_multigateway.chat_models._input_blocks import UnsupportedInputBlockError, input_block


@pytest.mark.parametrize("provider", ["openai", "mistral", "anthropic"])
@pytest.mark.parametrize(
    "block",
    [
        {"type": "file", "source_type": "id"},  # a v0 id block without its id
        {"type": "file", "source_type": "id", "id": None},
        {"type": "image", "base64": None},
        {"type": "image", "file_id": 12},
        {"type": "image"},
    ],
)
def test_a_block_without_its_data_is_refused_by_type(provider: str, block: dict[str, Any]) -> None:
    with pytest.raises(UnsupportedInputBlockError, match=f"cannot be sent to {provider}"):
        input_block(provider, block)


def test_a_url_with_credentials_is_not_quoted_in_the_refusal() -> None:
    block = {"type": "audio", "url": "https://user:s3cr3t@example.com/clip.wav?api_key=sk-planted"}
    with pytest.raises(UnsupportedInputBlockError) as info:
        input_block("openai", block)
    said = f"{info.value} {info.value!r} {info.value.args}"
    assert "s3cr3t" not in said
    assert "sk-planted" not in said


@pytest.mark.parametrize("provider", ["openai", "mistral", "anthropic"])
@pytest.mark.parametrize(
    "data",
    [
        "!!not base64!!",  # text where base64 belongs
        "QUJD" * 5000 + "QUJ",  # a cut upload: its length is no multiple of 4
        "QUJD" * 5000 + "a.b=",  # good at the start, not at the end
    ],
)
def test_data_that_is_not_base64_is_refused_before_the_upload(provider: str, data: str) -> None:
    with pytest.raises(ValueError, match="not valid base64") as info:
        input_block(provider, {"type": "image", "base64": data, "mime_type": "image/png"})
    assert len(str(info.value)) < 300  # the data itself is never quoted back
    assert input_block(provider, {"type": "image", "base64": "QUJD" * 5000, "mime_type": "image/png"})


def test_a_router_refuses_bad_base64_as_an_input_error_and_asks_no_one() -> None:
    from langchain_core.messages import HumanMessage

    from langchain_multigateway.chat_models.openai import OpenAIChatModel
    from langchain_multigateway.routing import Deployment, RoutingChatModel
    from langchain_multigateway.routing.policy import RequestPreparationError
    from tests.loopback import Reply, chat_completion, serve

    with serve(Reply(body=chat_completion("never"))) as (url, script):
        router = RoutingChatModel(
            deployments=[
                Deployment(model=OpenAIChatModel(model="gpt-4o", base_url=url, api_key="k"), name="a"),
                Deployment(model=OpenAIChatModel(model="gpt-4o", base_url=url, api_key="k"), name="b", priority=1),
            ]
        )
        bad = {"type": "image", "base64": "%%%%", "mime_type": "image/png"}
        with pytest.raises(RequestPreparationError, match="not valid base64"):
            router.invoke([HumanMessage(content=[{"type": "text", "text": "see"}, bad])])
        assert all(h.in_flight == 0 and h.consecutive_failures == 0 for h in router.health().values())
    assert script.requests == []
