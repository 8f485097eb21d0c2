"""init_chat_model-style discovery.

init_gateway_model takes LangChain's spellings; models load back by LangChain's own rules.
"""

from __future__ import annotations

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.load import dumps, loads

from langchain_multigateway import init_gateway_model
from langchain_multigateway.chat_models import AnthropicChatModel, MistralChatModel, OllamaChatModel, OpenAIChatModel
from langchain_multigateway.errors import ConfigurationError

SPELLINGS = [
    # init_chat_model(...) call                                  what init_gateway_model builds
    (("openai:gpt-4o-mini",), {}, OpenAIChatModel, "gpt-4o-mini"),
    (("gpt-4o-mini",), {"model_provider": "openai"}, OpenAIChatModel, "gpt-4o-mini"),
    (("gpt-4o-mini",), {}, OpenAIChatModel, "gpt-4o-mini"),  # provider inferred from the name, as LangChain does
    (("anthropic:claude-sonnet-4-5",), {}, AnthropicChatModel, "claude-sonnet-4-5"),
    (("mistralai:mistral-small-latest",), {}, MistralChatModel, "mistral-small-latest"),  # LangChain's key
    (("mistral-small-latest",), {"model_provider": "mistralai"}, MistralChatModel, "mistral-small-latest"),
    (("ollama:llama3.2:1b",), {}, OllamaChatModel, "llama3.2:1b"),
]


@pytest.mark.parametrize(("args", "kwargs", "cls", "model"), SPELLINGS, ids=[s[0][0] for s in SPELLINGS])
def test_init_chat_model_spellings_build_the_gateways_model(
    args: tuple[str, ...], kwargs: dict[str, str], cls: type[BaseChatModel], model: str
) -> None:
    built = init_gateway_model(*args, api_key="k", temperature=0, **kwargs)
    assert type(built) is cls
    assert built.model == model  # type: ignore[attr-defined]
    assert built.temperature == 0  # type: ignore[attr-defined]


def test_an_unknown_provider_key_lists_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match="registered providers"):
        init_gateway_model("gpt-4o", model_provider="google_genai")


@pytest.mark.parametrize("cls", [OpenAIChatModel, AnthropicChatModel, MistralChatModel, OllamaChatModel])
def test_a_dumped_model_loads_back_by_its_langchain_namespace(cls: type[BaseChatModel]) -> None:
    """LangChain's serialization convention: the id is the import path, and loads() imports it."""
    model = cls(model="m", api_key="sk-unit-secret") if cls is not OllamaChatModel else cls(model="m")
    text = dumps(model)
    assert "sk-unit-secret" not in text
    env = getattr(cls, "api_key_env", None)
    secrets = {env: "sk-unit-secret"} if env else {}  # dumped as a reference to its environment variable
    back = loads(text, valid_namespaces=["langchain_multigateway"], allowed_objects=[cls], secrets_map=secrets)
    assert type(back) is cls
    assert back.model == "m"  # type: ignore[attr-defined]
    if env:
        assert back.api_key.get_secret_value() == "sk-unit-secret"  # type: ignore[attr-defined]
