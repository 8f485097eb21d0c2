"""The provider registry: "provider:model" strings, prefixes, entry points, env defaults."""

from __future__ import annotations

import importlib.metadata
import pickle
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import SecretStr, field_validator

from langchain_multigateway import registry
from langchain_multigateway.chat_models.openai import OpenAIChatModel
from langchain_multigateway.errors import ConfigurationError, GatewayError
from langchain_multigateway.registry import (
    ENTRY_POINT_GROUP,
    ProviderRegistry,
    default_gateway_model,
    get_default_model,
    get_provider,
    init_gateway_model,
    list_providers,
    load_provider_class,
    parse_model_string,
    register_provider,
    unregister_provider,
)

BUILTINS = ["anthropic", "mistral", "ollama", "openai", "scripted"]


class EchoChatModel(BaseChatModel):
    """A tiny test-local provider."""

    model: str = "echo-default"
    temperature: float | None = None
    api_key: str | None = None

    @property
    def _llm_type(self) -> str:
        return "echo"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        return ChatResult(
            generations=[ChatGeneration(message=AIMessage(content=f"{self.model}: {messages[-1].content}"))]
        )


class NoDefaultChatModel(EchoChatModel):
    model: str


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> ProviderRegistry:
    """Each test gets the built-ins only (no entry points from the environment)."""
    fresh = ProviderRegistry.with_builtins(entry_point_group=None)
    monkeypatch.setattr(registry, "_REGISTRY", fresh)
    for name in ("DEFAULT_LLM_MODEL", "DEFAULT_LLM_TEMPERATURE"):
        monkeypatch.delenv(name, raising=False)
    return fresh


# ---------------------------------------------------------------------- lazy imports
def test_importing_registry_and_config_imports_no_provider_sdk() -> None:
    code = textwrap.dedent(
        """
        import sys
        import langchain_multigateway.registry as r, langchain_multigateway.config
        r.list_providers(); r.parse_model_string("mistral-large-latest"); r.get_default_model("anthropic")
        heavy = ["openai", "mistralai", "langchain_multigateway.chat_models.mistral",
                 "langchain_multigateway.chat_models.anthropic", "langchain_multigateway.chat_models.ollama",
                 "langchain_multigateway.testing.scripted"]
        print(",".join(m for m in heavy if m in sys.modules))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == ""


def test_builtins_are_registered_by_import_path() -> None:
    assert list_providers() == BUILTINS
    paths = {name: get_provider(name).import_path for name in BUILTINS}
    assert paths == {
        "openai": "langchain_multigateway.chat_models.openai:OpenAIChatModel",
        "mistral": "langchain_multigateway.chat_models.mistral:MistralChatModel",
        "ollama": "langchain_multigateway.chat_models.ollama:OllamaChatModel",
        "anthropic": "langchain_multigateway.chat_models.anthropic:AnthropicChatModel",
        "scripted": "langchain_multigateway.testing.scripted:ScriptedChatModel",
    }
    assert all(get_provider(name).origin == "builtin" for name in BUILTINS)


# ---------------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    ("name", "provider"),
    [
        ("gpt-4o-mini", "openai"),
        ("gpt-4.1", "openai"),
        ("o1-preview", "openai"),
        ("o3-mini", "openai"),
        ("o4-mini", "openai"),
        ("chatgpt-4o-latest", "openai"),
        ("GPT-4o", "openai"),
        ("mistral-large-latest", "mistral"),
        ("mistral-small-2503", "mistral"),
        ("open-mistral-nemo", "mistral"),
        ("open-mixtral-8x22b", "mistral"),
        ("codestral-latest", "mistral"),
        ("ministral-8b-latest", "mistral"),
        ("pixtral-12b", "mistral"),
        ("claude-3-5-haiku-latest", "anthropic"),
        ("claude-sonnet-4-5", "anthropic"),
    ],
)
def test_bare_names_resolve_by_prefix(name: str, provider: str) -> None:
    assert parse_model_string(name) == (provider, name)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("openai:gpt-4o-mini", ("openai", "gpt-4o-mini")),
        ("OpenAI:gpt-4o", ("openai", "gpt-4o")),
        ("ollama:llama3.2:1b", ("ollama", "llama3.2:1b")),
        ("anthropic:claude-haiku-4-5", ("anthropic", "claude-haiku-4-5")),
        ("mistral:", ("mistral", "mistral-small-latest")),
        ("openai:my-finetune", ("openai", "my-finetune")),
        ("  scripted:demo  ", ("scripted", "demo")),
    ],
)
def test_provider_model_strings(spec: str, expected: tuple[str, str]) -> None:
    assert parse_model_string(spec) == expected


def test_explicit_provider() -> None:
    assert parse_model_string("llama3.2:1b", provider="ollama") == ("ollama", "llama3.2:1b")
    assert parse_model_string("openai:gpt-4o", provider="openai") == ("openai", "gpt-4o")
    assert parse_model_string(None, provider="Anthropic") == ("anthropic", "claude-haiku-4-5")
    assert parse_model_string("", provider="openai") == ("openai", "gpt-4o-mini")


@pytest.mark.parametrize("spec", ["llama3.2:1b", "qwen2.5", "my-model"])
def test_bare_name_without_prefix_fails_clearly(spec: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_model_string(spec)
    message = str(info.value)
    assert f"cannot tell the provider of model {spec!r}" in message
    assert "'provider:model'" in message
    assert f"ollama:{spec}" in message
    assert "anthropic, mistral, ollama, openai, scripted" in message
    assert isinstance(info.value, ValueError)


def test_unknown_provider_lists_registered_ones() -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_model_string("acme:acme-1")
    message = str(info.value)
    assert "unknown provider 'acme'" in message
    assert "anthropic, mistral, ollama, openai, scripted" in message
    assert "'provider:model'" in message
    with pytest.raises(ConfigurationError, match=r"unknown provider 'acme'.*registered providers: anthropic"):
        init_gateway_model("x", provider="acme")


@pytest.mark.parametrize("spec", ["", "   ", None])
def test_no_model_at_all(spec: str | None) -> None:
    with pytest.raises(ConfigurationError, match="no model given"):
        parse_model_string(spec)


# ---------------------------------------------------------------------- building
def test_init_openai_model_with_params() -> None:
    llm = init_gateway_model(
        "openai:gpt-4o-mini", temperature=0, api_key="sk-test", base_url="http://127.0.0.1:8088/v1", max_tokens=64
    )
    assert isinstance(llm, OpenAIChatModel)
    assert (llm.model, llm.temperature, llm.max_tokens, llm.base_url) == (
        "gpt-4o-mini",
        0,
        64,
        "http://127.0.0.1:8088/v1",
    )
    assert isinstance(llm.api_key, SecretStr)


def test_init_forms_agree() -> None:
    kw: dict[str, Any] = {"api_key": "sk-test"}
    a = init_gateway_model("openai:gpt-4o", **kw)
    b = init_gateway_model("gpt-4o", **kw)
    c = init_gateway_model(model="gpt-4o", provider="openai", **kw)
    d = init_gateway_model("gpt-4o", model_provider="openai", **kw)
    e = init_gateway_model(provider="openai", **kw)
    assert {type(m) for m in (a, b, c, d, e)} == {OpenAIChatModel}
    assert [m.model for m in (a, b, c, d)] == ["gpt-4o"] * 4  # type: ignore[attr-defined]
    assert e.model == "gpt-4o-mini"  # type: ignore[attr-defined]


def test_rejected_parameter_names_the_parameter_and_hides_secrets() -> None:
    with pytest.raises(ConfigurationError) as info:
        init_gateway_model("gpt-4o", temperature="hot", api_key={"nested": "sekrit-value"})
    message = str(info.value)
    assert "temperature: expected a valid number" in message
    assert "(got 'hot')" in message
    assert "api_key" in message
    assert "sekrit-value" not in message
    assert info.value.key_path == "temperature"


def test_typo_parameter_is_caught_with_a_suggestion() -> None:
    with pytest.raises(
        ConfigurationError, match=r"temprature: unknown parameter for OpenAIChatModel; did you mean 'temperature'"
    ):
        init_gateway_model("gpt-4o", temprature=0, api_key="k")


def test_missing_api_key_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match=r"^openai:gpt-4o: No API key for openai.*OPENAI_API_KEY"):
        init_gateway_model("gpt-4o")


def test_build_error_pickles() -> None:
    with pytest.raises(ConfigurationError) as info:
        init_gateway_model("gpt-4o", temprature=0, api_key="k")
    again = pickle.loads(pickle.dumps(info.value))
    assert str(again) == str(info.value)
    plain = pickle.loads(pickle.dumps(ConfigurationError("bad", source="f.yaml", key_path="models.x", line=3)))
    assert (plain.source, plain.key_path, plain.line, plain.problems, plain.retryable) == (
        "f.yaml",
        "models.x",
        3,
        ["bad"],
        False,
    )
    assert isinstance(plain, GatewayError)
    assert isinstance(plain, ValueError)


# ---------------------------------------------------------------------- registering
def test_register_class_with_prefixes_and_default() -> None:
    info = register_provider("echo", EchoChatModel, default_model="echo-1", prefixes=("echo-",))
    assert info.import_path is None
    assert "echo" in list_providers()
    assert get_default_model("echo") == "echo-1"
    llm = init_gateway_model("echo-2-large", temperature=0.5)
    assert isinstance(llm, EchoChatModel)
    assert (llm.model, llm.temperature) == ("echo-2-large", 0.5)
    assert llm.invoke("hi").content == "echo-2-large: hi"
    assert isinstance(init_gateway_model(provider="echo"), EchoChatModel)
    unregister_provider("echo")
    assert "echo" not in list_providers()
    unregister_provider("echo")  # a no-op the second time


def test_register_by_import_path_is_lazy_and_cached(fresh_registry: ProviderRegistry) -> None:
    register_provider("echo", f"{__name__}:EchoChatModel")
    assert get_provider("echo").import_path == f"{__name__}:EchoChatModel"
    assert load_provider_class("echo") is EchoChatModel
    assert fresh_registry._classes["echo"] is EchoChatModel
    assert isinstance(init_gateway_model("echo:e1"), EchoChatModel)


def test_register_factory_callable() -> None:
    def make(model: str, **params: Any) -> BaseChatModel:
        return EchoChatModel(model=model.upper(), **params)

    register_provider("shout", make, default_model="loud")
    llm = init_gateway_model("shout:quiet", temperature=1)
    assert isinstance(llm, EchoChatModel)
    assert llm.model == "QUIET"
    assert init_gateway_model(provider="shout").model == "LOUD"  # type: ignore[attr-defined]


def test_longest_prefix_wins_and_builtins_can_be_replaced() -> None:
    register_provider("azure", EchoChatModel, prefixes=("gpt-4o-azure",))
    assert parse_model_string("gpt-4o-azure-eu") == ("azure", "gpt-4o-azure-eu")
    assert parse_model_string("gpt-4o") == ("openai", "gpt-4o")
    register_provider("openai", EchoChatModel, default_model="echo-openai", prefixes=("gpt-",))
    assert isinstance(init_gateway_model("gpt-4o"), EchoChatModel)
    assert get_provider("openai").origin == "registered"


def test_default_model_from_class_field() -> None:
    register_provider("echo", EchoChatModel)
    assert get_default_model("echo") == "echo-default"
    assert get_default_model("openai") == "gpt-4o-mini"
    assert get_default_model("scripted") == "scripted-model"
    register_provider("nodefault", NoDefaultChatModel)
    with pytest.raises(ConfigurationError, match=r"provider 'nodefault' has no default model.*'nodefault:<model>'"):
        get_default_model("nodefault")


@pytest.mark.parametrize(
    ("name", "target", "prefixes", "match"),
    [
        ("Bad Name", EchoChatModel, (), "invalid provider name 'Bad Name'"),
        ("a:b", EchoChatModel, (), "invalid provider name"),
        ("", EchoChatModel, (), "invalid provider name"),
        ("ok", "no_colon_path", (), "invalid import path 'no_colon_path'.*'package.module:ClassName'"),
        ("ok", "bad path:X", (), "invalid import path"),
        ("ok", 42, (), "must be a chat model class, a factory callable or an import path"),
        ("ok", EchoChatModel, "echo-", "prefixes of provider 'ok' must be non-empty strings"),
        ("ok", EchoChatModel, ("",), "prefixes of provider 'ok' must be non-empty strings"),
    ],
)
def test_register_rejects_bad_input(name: str, target: Any, prefixes: Any, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        register_provider(name, target, prefixes=prefixes)


class NotAModel:
    pass


NOT_CALLABLE = 42


@pytest.mark.parametrize(
    ("target", "match"),
    [
        ("no_such_module_xyz.sub:Model", r"provider 'lazy' \(registered\) could not be loaded.*ModuleNotFoundError"),
        (f"{__name__}:Missing", "could not be loaded.*AttributeError"),
        (f"{__name__}:NotAModel", "is NotAModel, not a BaseChatModel subclass"),
        (f"{__name__}:NOT_CALLABLE", "is not a chat model class or factory"),
    ],
)
def test_broken_import_targets(target: str, match: str) -> None:
    register_provider("lazy", target)
    with pytest.raises(ConfigurationError, match=match):
        init_gateway_model("lazy:m")


def test_factory_failures_become_configuration_errors() -> None:
    register_provider("wrongtype", lambda model, **kw: "not a model")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="the 'wrongtype' factory returned str, not a chat model"):
        init_gateway_model("wrongtype:m")

    def picky(model: str) -> BaseChatModel:
        return EchoChatModel(model=model)

    register_provider("picky", picky)
    with pytest.raises(ConfigurationError, match=r"cannot build picky:m: \(model\): TypeError"):
        init_gateway_model("picky:m", temperature=0)

    def raises_config(model: str) -> BaseChatModel:
        raise ConfigurationError("already clear")

    register_provider("clear", raises_config)
    with pytest.raises(ConfigurationError, match=r"^already clear$"):
        init_gateway_model("clear:m")


# ---------------------------------------------------------------------- entry points
def _write_fake_distribution(root: Path, entries: str) -> None:
    (root / "acme_gateway_provider.py").write_text(
        textwrap.dedent(
            """
            from typing import Any
            from langchain_core.language_models import BaseChatModel
            from langchain_core.messages import AIMessage
            from langchain_core.outputs import ChatGeneration, ChatResult

            class AcmeChatModel(BaseChatModel):
                model: str = "acme-1"
                temperature: float | None = None

                @property
                def _llm_type(self) -> str:
                    return "acme"

                def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any) -> ChatResult:
                    return ChatResult(generations=[ChatGeneration(message=AIMessage(content="acme"))])
            """
        )
    )
    info = root / "acme_gateway-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-gateway\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{entries}")


def test_entry_point_providers_from_a_fake_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_fake_distribution(
        tmp_path,
        "acme = acme_gateway_provider:AcmeChatModel\n"
        "ghost = acme_ghost_module_not_installed:Model\n"
        "noattr = acme_gateway_provider:DoesNotExist\n"
        "openai = acme_gateway_provider:AcmeChatModel\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_REGISTRY", ProviderRegistry.with_builtins())
    with pytest.warns(RuntimeWarning) as caught:
        names = list_providers()
    messages = [str(w.message) for w in caught]
    assert any("'ghost'" in m and "acme-gateway" in m and "not installed" in m for m in messages)
    assert any("'openai'" in m and "already registered (builtin)" in m for m in messages)
    assert "acme" in names
    assert "noattr" in names
    assert "ghost" not in names
    assert get_provider("openai").origin == "builtin"
    assert get_provider("acme").origin == "entry point 'acme' (acme-gateway)"
    assert "acme_gateway_provider" not in sys.modules  # discovered, not imported

    llm = init_gateway_model("acme:acme-2", temperature=0.1)
    assert type(llm).__name__ == "AcmeChatModel"
    assert llm.model == "acme-2"  # type: ignore[attr-defined]
    assert get_default_model("acme") == "acme-1"
    with pytest.raises(
        ConfigurationError, match=r"provider 'noattr' \(entry point 'noattr' \(acme-gateway\)\) could not"
    ):
        init_gateway_model("noattr:x")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        list_providers()  # discovered once: no second round of warnings
    sys.modules.pop("acme_gateway_provider", None)


def _fake_entry_point(name: str, value: str, dist: str | None = "fake-dist") -> Any:
    return SimpleNamespace(name=name, value=value, dist=SimpleNamespace(name=dist) if dist else None)


def test_entry_points_are_read_once_and_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def fake_entry_points(*, group: str) -> list[Any]:
        calls.append(group)
        return [_fake_entry_point("echo", f"{__name__}:EchoChatModel")]

    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points)
    fresh = ProviderRegistry.with_builtins()
    monkeypatch.setattr(registry, "_REGISTRY", fresh)
    assert calls == []
    assert "echo" in list_providers()
    assert parse_model_string("echo:x") == ("echo", "x")
    assert isinstance(init_gateway_model("echo:x"), EchoChatModel)
    assert calls == [ENTRY_POINT_GROUP]


def test_broken_entry_points_warn_and_are_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_entry_points(*, group: str) -> list[Any]:
        return [
            _fake_entry_point("malformed", "not a path"),
            _fake_entry_point("Bad Name", f"{__name__}:EchoChatModel"),
            _fake_entry_point("nodist", "zz_not_installed_anywhere:X", dist=None),
            _fake_entry_point("fine", f"{__name__}:EchoChatModel"),
        ]

    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points)
    monkeypatch.setattr(registry, "_REGISTRY", ProviderRegistry.with_builtins())
    with pytest.warns(RuntimeWarning) as caught:
        names = list_providers()
    messages = "\n".join(str(w.message) for w in caught)
    assert "entry point 'malformed' = 'not a path' (fake-dist)" in messages
    assert "entry point 'Bad Name'" in messages
    assert "entry point 'nodist' = 'zz_not_installed_anywhere:X' (unknown distribution)" in messages
    assert names == sorted([*BUILTINS, "fine"])


def test_unreadable_entry_points_warn(monkeypatch: pytest.MonkeyPatch) -> None:
    def exploding(*, group: str) -> list[Any]:
        raise RuntimeError("metadata is corrupt")

    monkeypatch.setattr(importlib.metadata, "entry_points", exploding)
    monkeypatch.setattr(registry, "_REGISTRY", ProviderRegistry.with_builtins())
    with pytest.warns(RuntimeWarning, match="could not read the 'langchain_multigateway.providers' entry points"):
        assert list_providers() == BUILTINS


def test_find_spec_failure_counts_as_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_entry_points(*, group: str) -> list[Any]:
        return [_fake_entry_point("weird", "weird_mod:X")]

    def bad_find_spec(name: str) -> None:
        raise ValueError("weird_mod.__spec__ is None")

    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points)
    monkeypatch.setattr(importlib.util, "find_spec", bad_find_spec)
    monkeypatch.setattr(registry, "_REGISTRY", ProviderRegistry.with_builtins())
    with pytest.warns(RuntimeWarning, match="'weird_mod' is not installed"):
        assert "weird" not in list_providers()


# ---------------------------------------------------------------------- environment defaults
def test_default_model_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEFAULT_LLM_MODEL", "openai:gpt-4o")
    monkeypatch.setenv("DEFAULT_LLM_TEMPERATURE", "0.3")
    llm = default_gateway_model(api_key="k")
    assert isinstance(llm, OpenAIChatModel)
    assert (llm.model, llm.temperature) == ("gpt-4o", 0.3)
    assert init_gateway_model(api_key="k").temperature == 0.3  # type: ignore[attr-defined]
    # explicit values win, and skip the variable entirely
    monkeypatch.setenv("DEFAULT_LLM_TEMPERATURE", "hot")
    assert default_gateway_model(api_key="k", temperature=1.0).temperature == 1.0  # type: ignore[attr-defined]


def test_default_model_bare_name_and_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    register_provider("echo", EchoChatModel, prefixes=("echo-",))
    monkeypatch.setenv("DEFAULT_LLM_MODEL", "echo-7")
    assert default_gateway_model().model == "echo-7"  # type: ignore[attr-defined]
    monkeypatch.delenv("DEFAULT_LLM_MODEL")
    assert default_gateway_model(default="echo:fallback").model == "fallback"  # type: ignore[attr-defined]
    assert default_gateway_model(env={"DEFAULT_LLM_MODEL": "echo-9"}).model == "echo-9"  # type: ignore[attr-defined]


def test_no_default_model() -> None:
    with pytest.raises(ConfigurationError, match="no default model: set DEFAULT_LLM_MODEL to 'provider:model'") as info:
        init_gateway_model()
    assert info.value.source == "DEFAULT_LLM_MODEL"


@pytest.mark.parametrize("raw", ["hot", "-1", "nan", "inf", "0,7"])
def test_bad_default_temperature(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("DEFAULT_LLM_MODEL", "openai:gpt-4o")
    monkeypatch.setenv("DEFAULT_LLM_TEMPERATURE", raw)
    with pytest.raises(ConfigurationError) as info:
        default_gateway_model(api_key="k")
    message = str(info.value)
    assert f"DEFAULT_LLM_TEMPERATURE={raw!r}" in message
    assert "expected a non-negative number such as 0 or 0.7" in message
    assert info.value.key_path == "DEFAULT_LLM_TEMPERATURE"


def test_bad_default_model_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEFAULT_LLM_MODEL", "acme:thing")
    with pytest.raises(ConfigurationError, match=r"DEFAULT_LLM_MODEL='acme:thing': unknown provider 'acme'"):
        default_gateway_model()
    with pytest.raises(ConfigurationError, match=r"^default model 'mystery': cannot tell the provider"):
        default_gateway_model(env={}, default="mystery")


class ValidatingChatModel(EchoChatModel):
    @field_validator("temperature")
    @classmethod
    def _check(cls, value: float | None) -> float | None:
        if value is not None and value > 1:
            raise ValueError("temperature above 1 is not supported here")
        return value


def test_plain_value_errors_from_validators_are_unwrapped() -> None:
    register_provider("strict", ValidatingChatModel)
    with pytest.raises(
        ConfigurationError, match=r"temperature: temperature above 1 is not supported here \(got 1\.5\)"
    ):
        init_gateway_model("strict:m", temperature=1.5)


def test_missing_key_through_the_registry_is_still_a_missing_key_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from langchain_multigateway.errors import MissingAPIKeyError

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError, match="OPENAI_API_KEY") as caught:
        init_gateway_model("openai:gpt-4o")
    assert isinstance(caught.value, ConfigurationError)  # and located like any build problem
    assert isinstance(caught.value.__cause__, MissingAPIKeyError)
