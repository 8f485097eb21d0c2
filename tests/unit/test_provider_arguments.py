"""What a new user trips over: misspelled constructor arguments, and Mistral's usage reports."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from pydantic import BaseModel

from langchain_multigateway import RetryPolicy
from langchain_multigateway.chat_models.anthropic import AnthropicChatModel
from langchain_multigateway.chat_models.mistral import MistralChatModel
from langchain_multigateway.chat_models.ollama import OllamaChatModel
from langchain_multigateway.chat_models.openai import OpenAIChatModel
from langchain_multigateway.errors import ConfigurationError
from langchain_multigateway.tokens import count_text_tokens
from tests.loopback import Reply, chat_completion, chat_stream, serve

KEY = "sk-arguments-test-key"


@pytest.mark.parametrize(
    ("cls", "typo", "meant"),
    [
        (OpenAIChatModel, "base_ur", "base_url"),
        (OpenAIChatModel, "temprature", "temperature"),
        (MistralChatModel, "sever_url", "server_url"),
        (AnthropicChatModel, "max_token", "max_tokens"),
        (OllamaChatModel, "num_ctxx", "num_ctx"),
        (OpenAIChatModel, "tiemout", "timeout"),  # a swap of neighbours is one edit too
    ],
)
def test_a_name_one_edit_from_an_argument_is_refused(cls: type, typo: str, meant: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        cls(api_key=KEY, **{typo: "http://127.0.0.1:8088/v1"})
    assert f"has no argument {typo!r}: did you mean {meant!r}?" in caught.value.message
    assert caught.value.key_path == typo
    assert isinstance(caught.value, ValueError)


def test_an_unknown_argument_goes_to_model_kwargs_with_a_warning() -> None:
    with pytest.warns(UserWarning, match=r"'logprobs' is not an argument of OpenAIChatModel.*model_kwargs"):
        model = OpenAIChatModel(api_key=KEY, logprobs=True, model_kwargs={"user": "u1"})
    assert model.model_kwargs == {"user": "u1", "logprobs": True}
    assert model._build_request([HumanMessage("hi")], None, stream=False)["logprobs"] is True


def test_the_warning_names_the_closest_argument() -> None:
    with pytest.warns(UserWarning, match=r"did you mean 'frequency_penalty'"):
        OpenAIChatModel(api_key=KEY, frequence_penalt=0.5)


def test_known_arguments_and_aliases_pass_silently() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        OpenAIChatModel(model_name="m", openai_api_key=KEY, request_timeout=3, openai_api_base="http://x/v1")
        MistralChatModel(api_key=KEY, endpoint="http://x", random_seed=1)
        AnthropicChatModel(api_key=KEY, max_tokens_to_sample=5, anthropic_api_url="http://x")


def test_an_unknown_ollama_argument_is_refused_naming_it() -> None:
    with pytest.raises(ConfigurationError, match="has no argument"):
        OllamaChatModel(entirely_unknown=1)


# ---------------------------------------------------------------------- Mistral usage
class GetWeather(BaseModel):
    """Get the weather for a city, with a long description that costs prompt tokens to send along."""

    city: str
    unit: str


def _mistral(url: str) -> MistralChatModel:
    return MistralChatModel(model="stub-model", server_url=url, api_key=KEY, retry_policy=RetryPolicy(max_attempts=1))


def _streamed_usage(model: Any, pieces: list[str]) -> Any:
    events = [e for e in chat_stream(pieces) if not (isinstance(e, dict) and e.get("usage"))]  # no server usage
    with serve(Reply(sse=events)) as (url, _):
        chunks = list(model(url).stream("What is the weather in Paris?"))
    return chunks[-1]


def test_mistral_stream_estimate_counts_bound_tools_and_only_generated_output() -> None:
    plain = _streamed_usage(_mistral, ["Hello", " world"])
    with_tools = _streamed_usage(lambda url: _mistral(url).bind_tools([GetWeather]), ["Hello", " world"])
    assert plain.response_metadata["usage_estimated"] is True
    prompt = [HumanMessage("What is the weather in Paris?")]
    counter = _mistral("http://127.0.0.1:9")
    assert plain.usage_metadata["input_tokens"] == counter.get_num_tokens_from_messages(prompt)
    assert with_tools.usage_metadata["input_tokens"] == counter.get_num_tokens_from_messages(prompt, [GetWeather])
    assert with_tools.usage_metadata["input_tokens"] > plain.usage_metadata["input_tokens"] + 20
    assert plain.usage_metadata["output_tokens"] == count_text_tokens("Hello world", "cl100k_base")


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12, "num_cached_tokens": 6},
        {
            "prompt_tokens": 10,
            "completion_tokens": 2,
            "total_tokens": 12,
            "prompt_tokens_details": {"cached_tokens": 6},
        },
    ],
)
def test_mistral_cached_tokens_are_cache_reads(usage: dict[str, Any]) -> None:
    answer = {**chat_completion(), "usage": usage}
    stream = [*chat_stream(["Hi"])[:-2], {"id": "x", "model": "stub-model", "choices": [], "usage": usage}, "[DONE]"]
    with serve(Reply(body=answer), Reply(sse=stream)) as (url, _):
        whole = _mistral(url).invoke("hi")
        streamed = list(_mistral(url).stream("hi"))[-1]
    for got in (whole.usage_metadata, streamed.usage_metadata):
        assert got is not None
        assert got["input_tokens"] == 10
        assert got["input_token_details"]["cache_read"] == 6


def test_mistral_stream_estimate_never_passes_max_tokens() -> None:
    """Counted with cl100k_base, text in other scripts can come out longer than the model's own
    count: an answer cut at max_tokens used exactly max_tokens, and none uses more."""
    events = [e for e in chat_stream(["mendatang ticket " * 20]) if not (isinstance(e, dict) and e.get("usage"))]
    for event in events:
        if isinstance(event, dict) and event["choices"] and event["choices"][0]["finish_reason"]:
            event["choices"][0]["finish_reason"] = "length"
    with serve(Reply(sse=events)) as (url, _):
        model = MistralChatModel(model="stub-model", server_url=url, api_key=KEY, max_tokens=7)
        last = list(model.stream("hi"))[-1]
    assert last.usage_metadata["output_tokens"] == 7
