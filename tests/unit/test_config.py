"""YAML / dict configuration: interpolation, validation, error messages, building models."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import SecretStr

from langchain_multigateway import registry
from langchain_multigateway.config import (
    ALLOWED_TOP_LEVEL_KEYS,
    GatewayConfig,
    ModelSpec,
    interpolate_env,
    load_config,
)
from langchain_multigateway.errors import ConfigurationError
from langchain_multigateway.registry import ProviderRegistry, register_provider

ALL_PROVIDERS = Path(__file__).parent / "configs" / "all_providers.yaml"
SECRET = "sk-very-secret-value-123"


class PlainKeyChatModel(BaseChatModel):
    """Test-local provider whose api_key is a plain str (not SecretStr)."""

    model: str = "plain"
    api_key: str | None = None
    temperature: float | None = None

    @property
    def _llm_type(self) -> str:
        return "plain"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content="plain"))])


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> ProviderRegistry:
    fresh = ProviderRegistry.with_builtins(entry_point_group=None)
    monkeypatch.setattr(registry, "_REGISTRY", fresh)
    return fresh


def write(tmp_path: Path, text: str, name: str = "gateway.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


# ---------------------------------------------------------------------- every provider
def test_all_providers_file_builds_working_instances(monkeypatch: pytest.MonkeyPatch) -> None:
    from langchain_multigateway.chat_models.anthropic import AnthropicChatModel
    from langchain_multigateway.chat_models.mistral import MistralChatModel
    from langchain_multigateway.chat_models.ollama import OllamaChatModel
    from langchain_multigateway.chat_models.openai import OpenAIChatModel
    from langchain_multigateway.testing.scripted import ScriptedChatModel

    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    config = load_config(ALL_PROVIDERS, env={"MISTRAL_TEMPERATURE": "0.4"})
    assert config.source == str(ALL_PROVIDERS)
    assert list(config.models) == ["local", "mistral", "llama", "claude", "gpt", "demo"]
    assert {name: (s.provider, s.model) for name, s in config.models.items()} == {
        "local": ("openai", "gemma-3-270m"),
        "mistral": ("mistral", "mistral-small-latest"),
        "llama": ("ollama", "llama3.2:1b"),
        "claude": ("anthropic", "claude-haiku-4-5"),
        "gpt": ("openai", "gpt-4o-mini"),
        "demo": ("scripted", "demo-model"),
    }
    models = config.build_models()

    local = models["local"]
    assert isinstance(local, OpenAIChatModel)
    assert (local.model, local.base_url, local.temperature, local.max_tokens) == (
        "gemma-3-270m",
        "http://127.0.0.1:8088/v1",
        0,
        128,
    )
    assert local.api_key is not None
    assert local.api_key.get_secret_value() == "no-key-needed"
    assert local.default_headers == {"Authorization": "Bearer no-key-needed"}

    mistral = models["mistral"]
    assert isinstance(mistral, MistralChatModel)
    assert (mistral.model, mistral.temperature) == ("mistral-small-latest", 0.4)
    assert mistral.api_key is not None
    assert mistral.api_key.get_secret_value() == "mistral-test-key"

    llama = models["llama"]
    assert isinstance(llama, OllamaChatModel)
    assert (llama.model, llama.base_url, llama.num_ctx) == ("llama3.2:1b", "http://127.0.0.1:11434", 4096)

    claude = models["claude"]
    assert isinstance(claude, AnthropicChatModel)
    assert (claude.model, claude.max_tokens) == ("claude-haiku-4-5", 256)

    gpt = models["gpt"]
    assert isinstance(gpt, OpenAIChatModel)
    assert gpt.model == "gpt-4o-mini"

    demo = models["demo"]
    assert isinstance(demo, ScriptedChatModel)
    assert demo.model == "demo-model"
    assert demo.invoke("hi").content == "Hello from the script."

    assert config.routers == {
        "main": {
            "strategy": "ordered",
            "deployments": ["local", "mistral", "llama", "claude"],
            "note": "${NOT_A_VARIABLE}",
        }
    }
    assert config.line_of(("models", "claude", "max_tokens")) == 25
    assert config.line_of(("routers", "main", "deployments", 2)) == 34
    assert config.line_of(("nowhere",)) is None


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(ALL_PROVIDERS, env={"LOCAL_LLM_URL": "http://10.0.0.5:9000/v1", "LOCAL_LLM_KEY": SECRET})
    local = config.models["local"]
    assert local.params["base_url"] == "http://10.0.0.5:9000/v1"
    assert isinstance(local.params["api_key"], SecretStr)
    assert local.params["api_key"].get_secret_value() == SECRET
    assert SECRET not in repr(config)
    assert SECRET not in repr(local)
    assert SECRET not in str(local)
    assert "**********" in repr(local)


# ---------------------------------------------------------------------- forms
def test_dict_source_and_shorthands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    config = load_config(
        {
            "models": {
                "a": "openai:gpt-4o",
                "b": {"model": "claude-sonnet-4-5", "api_key": "k"},
                "c": {"provider": "mistral", "api_key": "k"},
                "d": {"model_name": "gpt-4.1-mini"},
                "e": {"provider": "ollama", "model": "ollama:qwen2.5:0.5b"},
            }
        }
    )
    assert isinstance(config, GatewayConfig)
    assert config.source == "<dict>"
    assert config.routers == {}
    assert config.version == 1
    assert [(s.provider, s.model) for s in config.models.values()] == [
        ("openai", "gpt-4o"),
        ("anthropic", "claude-sonnet-4-5"),
        ("mistral", "mistral-small-latest"),
        ("openai", "gpt-4.1-mini"),
        ("ollama", "qwen2.5:0.5b"),
    ]
    assert config.build_model("a").model == "gpt-4o"  # type: ignore[attr-defined]
    assert config.line_of(("models", "a")) is None


def test_models_section_may_be_absent_or_empty() -> None:
    assert load_config({"routers": {"r": {"x": 1}}}).models == {}
    assert load_config({"models": None, "routers": None}).routers == {}


def test_test_local_provider_and_plain_string_secret() -> None:
    register_provider("plain", PlainKeyChatModel, default_model="p-1")
    config = load_config({"models": {"p": {"provider": "plain", "api_key": SECRET, "temperature": "0.5"}}})
    spec = config.models["p"]
    assert isinstance(spec.params["api_key"], SecretStr)
    assert spec.params["temperature"] == 0.5
    llm = spec.build()
    assert isinstance(llm, PlainKeyChatModel)
    assert (llm.model, llm.api_key, llm.temperature) == ("p-1", SECRET, 0.5)


# ---------------------------------------------------------------------- interpolation
def test_interpolation_rules() -> None:
    env = {"HOST": "example.org", "EMPTY": "", "PORT": "8080"}
    value = {
        "url": "https://${HOST}:${PORT}/v1",
        "fallback": "${MISSING:-default value}",
        "empty_default": "${EMPTY:-used}",
        "empty": "[${EMPTY}]",
        "escaped": "$${HOST} and $$ and $ alone",
        "nested": [{"deep": ["${HOST}"]}, 3, None, True],
        "tuple": ("${PORT}",),
    }
    assert interpolate_env(value, env) == {
        "url": "https://example.org:8080/v1",
        "fallback": "default value",
        "empty_default": "used",
        "empty": "[]",
        "escaped": "${HOST} and $$ and $ alone",
        "nested": [{"deep": ["example.org"]}, 3, None, True],
        "tuple": ["8080"],
    }


def test_interpolation_uses_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MG_TEST_VAR", "from-os")
    assert interpolate_env("${MG_TEST_VAR}") == "from-os"
    config = load_config({"models": {"m": {"model": "openai:${MG_TEST_VAR}", "api_key": "k"}}})
    assert config.models["m"].model == "from-os"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("${1BAD}", r"invalid variable reference '\$\{1BAD\}': expected \$\{NAME\} or \$\{NAME:-default\}"),
        ("${}", "invalid variable reference"),
        ("${NOPE_XYZ}", r"environment variable NOPE_XYZ is not set \(set it, or give a default"),
    ],
)
def test_interpolation_errors(text: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        interpolate_env({"k": [text]}, {})


# ---------------------------------------------------------------------- the bad-config matrix
BAD_CONFIGS = [
    pytest.param(
        """
        models:
          fast:
            provider: acme
            model: x
        """,
        "models.fast.provider",
        ["line 3", "unknown provider 'acme'", "registered providers: anthropic, mistral, ollama, openai, scripted"],
        id="unknown-provider",
    ),
    pytest.param(
        """
        models:
          fast:
            model: acme:x
        """,
        "models.fast.model",
        ["line 3", "unknown provider 'acme'", "anthropic, mistral, ollama, openai, scripted"],
        id="unknown-provider-in-string",
    ),
    pytest.param(
        """
        models:
          fast:
            temperature: 0
        """,
        "models.fast.model",
        ["line 2", "missing field 'model'", "expected 'provider:model'"],
        id="missing-field",
    ),
    pytest.param(
        """
        models:
          fast:
            model: openai:gpt-4o
            temperature: hot
        """,
        "models.fast.temperature",
        ["line 4", "expected a valid number", "(got 'hot')"],
        id="wrong-type",
    ),
    pytest.param(
        """
        models:
          fast:
            model: openai:gpt-4o
            max_tokens: -5
        """,
        "models.fast.max_tokens",
        ["line 4", "expected greater than 0"],
        id="out-of-range",
    ),
    pytest.param(
        """
        models:
          fast:
            provider: 3
            model: gpt-4o
        """,
        "models.fast.provider",
        ["line 3", "expected a provider name string such as 'openai' (got int 3)"],
        id="provider-not-a-string",
    ),
    pytest.param(
        """
        models:
          fast:
            model: [gpt-4o]
        """,
        "models.fast.model",
        ["line 3", "expected a model name string (got a list)"],
        id="model-not-a-string",
    ),
    pytest.param(
        """
        models:
          fast:
            model: openai:gpt-4o
            api_key: ${MG_MISSING_KEY}
        """,
        "models.fast.api_key",
        ["line 4", "environment variable MG_MISSING_KEY is not set"],
        id="missing-env-var",
    ),
    pytest.param(
        """
        - models
        - routers
        """,
        "(top level)",
        ["the top level must be a mapping with keys: models, routers, state, version", "(got a list)"],
        id="not-a-mapping",
    ),
    pytest.param(
        """
        just a string
        """,
        "(top level)",
        ["the top level must be a mapping", "(got str 'just a string')"],
        id="scalar-document",
    ),
    pytest.param("", "(top level)", ["the configuration is empty; expected a mapping with keys"], id="empty-file"),
    pytest.param(
        """
        models:
          fast: !!python/object/apply:os.system ["echo pwned"]
        """,
        "models.fast",
        ["line 2", "the tag '!!python/object/apply:os.system' is not allowed", "yaml.safe_load"],
        id="unsafe-tag",
    ),
    pytest.param(
        """
        models:
          fast: {model: gpt-4o
        routers: {}
        """,
        "",
        ["line 3", "invalid YAML", "while parsing a flow mapping at line 2", "expected ',' or '}'"],
        id="syntax-error",
    ),
    pytest.param(
        """
        models:
          fast:
            model: gpt-4o
           bad_indent: 1
        """,
        "",
        ["line 4", "invalid YAML", "expected <block end>"],
        id="syntax-error-indent",
    ),
    pytest.param(
        """
        modles: {}
        """,
        "modles",
        [
            "line 1",
            "unknown top-level key 'modles' (did you mean 'models'?)",
            "allowed keys: models, routers, state, version",
        ],
        id="unknown-top-level-key",
    ),
    pytest.param(
        """
        models:
          fast:
            model: openai:gpt-4o
            temperature: ${DEFAULT_LLM_TEMPERATURE:-warm}
        """,
        "models.fast.temperature",
        ["line 4", "expected a valid number", "(got 'warm')"],
        id="bad-env-default-temperature",
    ),
    pytest.param(
        """
        models:
          fast:
            model: openai:gpt-4o
            temperature: -0.5
        """,
        "models.fast.temperature",
        ["line 4", "expected greater than or equal to 0"],
        id="negative-temperature",
    ),
    pytest.param(
        """
        models: [a, b]
        """,
        "models",
        ["line 1", "expected a mapping of model name → model spec (got a list)"],
        id="models-not-a-mapping",
    ),
    pytest.param(
        """
        models:
          fast:
        """,
        "models.fast",
        ["line 2", "expected a mapping with 'provider' and 'model', or a 'provider:model' string", "(got nothing"],
        id="model-spec-empty",
    ),
    pytest.param(
        """
        models:
          1: openai:gpt-4o
        """,
        "models.1",
        ["line 2", "model names must be non-empty strings (got int 1)"],
        id="model-name-not-a-string",
    ),
    pytest.param(
        """
        models:
          fast:
            model: openai:gpt-4o
            1: x
        """,
        "models.fast",
        ["line 2", "parameter names must be strings"],
        id="param-name-not-a-string",
    ),
    pytest.param(
        """
        routers: [main]
        """,
        "routers",
        ["line 1", "expected a mapping of router name → router spec (got a list)"],
        id="routers-not-a-mapping",
    ),
    pytest.param(
        """
        version: 2
        """,
        "version",
        ["line 1", "expected 1 (got int 2)"],
        id="unsupported-version",
    ),
    pytest.param(
        """
        models:
          fast:
            model: mystery-model
        """,
        "models.fast.model",
        ["line 3", "cannot tell the provider of model 'mystery-model'", "'provider:model'"],
        id="bare-name-without-prefix",
    ),
]


@pytest.mark.parametrize(("text", "key_path", "expected"), BAD_CONFIGS)
def test_bad_config_matrix(tmp_path: Path, text: str, key_path: str, expected: list[str]) -> None:
    path = write(tmp_path, text, "bad-gateway.yaml")
    with pytest.raises(ConfigurationError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert str(path) in message
    assert info.value.source == str(path)
    assert key_path in message
    if key_path and key_path != "(top level)":
        assert info.value.key_path == key_path
    for fragment in expected:
        assert fragment in message
    assert isinstance(info.value, ValueError)


def test_several_problems_are_reported_together(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        models:
          a:
            model: openai:gpt-4o
            temperature: hot
            max_tokens: many
          b:
            provider: acme
        extra: 1
        """,
    )
    with pytest.raises(ConfigurationError) as info:
        load_config(path, env={})
    error = info.value
    assert str(error).startswith(f"{path}: 4 problems:\n")
    assert error.problems == [
        "line 8, extra: unknown top-level key 'extra'; allowed keys: models, routers, state, version",
        "line 4, models.a.temperature: expected a valid number, unable to parse string as a number (got 'hot')",
        "line 5, models.a.max_tokens: expected a valid integer, unable to parse string as an integer (got 'many')",
        "line 7, models.b.provider: " + error.problems[3].split("models.b.provider: ", 1)[1],
    ]
    assert "unknown provider 'acme'" in error.problems[3]
    assert (error.key_path, error.line) == ("extra", 8)


def test_missing_file_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigurationError, match=r"nope\.yaml: cannot read the configuration file"):
        load_config(missing)
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_config(str(tmp_path))  # a directory


def test_dict_errors_say_dict() -> None:
    with pytest.raises(ConfigurationError, match=r"^<dict>, models\.x\.temperature: expected a valid number"):
        load_config({"models": {"x": {"model": "gpt-4o", "temperature": "hot"}}})
    with pytest.raises(ConfigurationError, match=r"^<dict>, \(top level\): the configuration is empty"):
        load_config(None)  # type: ignore[arg-type]


def test_allowed_top_level_keys() -> None:
    assert ALLOWED_TOP_LEVEL_KEYS == ("models", "routers", "state", "version")


# ---------------------------------------------------------------------- build-time errors
def test_build_time_errors_name_file_line_and_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    path = write(
        tmp_path,
        f"""
        models:
          typo:
            model: openai:gpt-4o
            temprature: 0
            api_key: {SECRET}
          nokey:
            model: openai:gpt-4o
          ok:
            model: openai:gpt-4o
            api_key: {SECRET}
          headers:
            model: openai:gpt-4o
            api_key: {SECRET}
            default_headers: 7
        """,
    )
    config = load_config(path)
    assert SECRET not in repr(config)
    with pytest.raises(ConfigurationError) as info:
        config.build_model("typo")
    message = str(info.value)
    assert message.startswith(f"{path}, line 4, models.typo.temprature: unknown parameter for OpenAIChatModel;")
    assert "did you mean 'temperature'?" in message
    assert SECRET not in message
    assert info.value.line == 4

    with pytest.raises(ConfigurationError) as info:
        config.build_model("nokey")
    assert str(info.value).startswith(f"{path}, line 6, models.nokey: No API key for openai")

    with pytest.raises(ConfigurationError) as info:
        config.build_model("headers")
    assert "line 14, models.headers.default_headers: expected a valid dictionary (got 7)" in str(info.value)

    with pytest.raises(ConfigurationError) as info:
        config.build_models()
    error = info.value
    assert str(error).startswith(f"{path}: 3 problems:")
    assert [p.split(":", 1)[0] for p in error.problems] == [
        "line 4, models.typo.temprature",
        "line 6, models.nokey",
        "line 14, models.headers.default_headers",
    ]
    assert SECRET not in str(error)
    assert config.build_model("ok").model == "gpt-4o"  # type: ignore[attr-defined]


def test_unknown_model_name_lists_declared(tmp_path: Path) -> None:
    config = load_config({"models": {"a": "openai:gpt-4o", "b": "openai:gpt-4o"}})
    with pytest.raises(ConfigurationError, match=r"^<dict>, models\.zzz: no model named 'zzz'; declared models: a, b$"):
        config.build_model("zzz")
    with pytest.raises(ConfigurationError, match="declared models: none"):
        load_config({"models": {}}).build_model("a")


def test_provider_that_cannot_be_loaded(tmp_path: Path) -> None:
    register_provider("gone", "mg_no_such_module_anywhere:Model")
    path = write(
        tmp_path,
        """
        models:
          g:
            provider: gone
            model: m
        """,
    )
    config = load_config(path)
    with pytest.raises(ConfigurationError) as info:
        config.build_model("g")
    assert str(info.value).startswith(
        f"{path}, line 3, models.g.provider: provider 'gone' (registered) could not be loaded"
    )


def test_error_helper_for_router_sections(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        routers:
          main:
            strategy: sideways
            deployments:
              - model: a
              - model: b
        """,
    )
    config = load_config(path)
    error = config.error((("routers", "main", "strategy"), "expected one of: ordered, round_robin"))
    assert str(error) == f"{path}, line 3, routers.main.strategy: expected one of: ordered, round_robin"
    two = config.error(
        (("routers", "main", "deployments", 1, "model"), "unknown model 'b'"),
        (("routers", "main", "weird key"), "nope"),
    )
    assert two.problems == [
        "line 6, routers.main.deployments[1].model: unknown model 'b'",
        "line 2, routers.main['weird key']: nope",
    ]


# ---------------------------------------------------------------------- secrets
def test_secrets_are_redacted_everywhere(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        models:
          m:
            model: openai:gpt-4o
            api_key: ${KEY}
            default_headers:
              Authorization: Bearer ${KEY}
              x-api-key: ${KEY}
              X-Trace: visible
            model_kwargs: {extra_body: [{password: "${KEY}"}]}
        routers:
          main:
            state: {redis_url: "redis://localhost", password: "${KEY}"}
        """,
    )
    config = load_config(path, env={"KEY": SECRET})
    spec = config.models["m"]
    assert isinstance(spec, ModelSpec)
    for text in (repr(config), str(config), repr(spec), str(spec), repr(config.models)):
        assert SECRET not in text
    assert "visible" in repr(spec)
    assert "redis://localhost" in repr(config)
    assert spec.params["default_headers"]["Authorization"] == f"Bearer {SECRET}"  # the value itself is intact
    with pytest.raises(ConfigurationError) as info:
        load_config(
            {"models": {"m": {"model": "gpt-4o", "api_key": SECRET, "temperature": "hot"}}}, env={}
        ).build_model("m")
    assert SECRET not in str(info.value)


def test_describe_and_redact_corners() -> None:
    with pytest.raises(
        ConfigurationError, match=r"models\.x\.provider: expected a provider name string .*\(got a mapping\)"
    ):
        load_config({"models": {"x": {"provider": {"name": "openai"}, "model": "m"}}})
    spec = ModelSpec(name="s", provider="openai", model="m", params={"creds": SecretStr(SECRET), "ok": (1, 2)})
    assert SECRET not in repr(spec)
    assert "'ok': [1, 2]" in repr(spec)


# ---------------------------------------------------------------------- YAML aliases
_BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9) if prev else ', '.join(['lol'] * 9)}]\n"
    for prev, name in zip(["", *"abcdefgh"], "abcdefghi", strict=True)
)


def test_a_yaml_alias_bomb_is_refused_with_its_line_in_bounded_memory(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "bomb.yaml"
    path.write_text("models: {}\nbomb:\n" + "".join("  " + line for line in _BOMB.splitlines(keepends=True)))
    assert len(path.read_bytes()) < 600
    # In a child process capped at 1 GiB of address space, so a regression fails instead of swapping.
    script = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "from langchain_multigateway.config import load_config\n"
        "from langchain_multigateway.errors import ConfigurationError\n"
        "try:\n"
        "    load_config(sys.argv[1])\n"
        "except ConfigurationError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{path}, line 7, column" in done.stdout
    assert "the alias *d takes the expanded file past 10,000 nodes" in done.stdout


def test_modest_aliases_still_work_and_a_recursive_one_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        models:
          base: &base {model: "openai:gpt-4o", temperature: 0, api_key: none}
          again: *base
        """,
    )
    config = load_config(path)
    assert config.models["again"].model == "gpt-4o"
    looped = write(tmp_path, "models: {}\nloop: &r [1, *r]\n", name="loop.yaml")
    with pytest.raises(
        ConfigurationError,
        match=r"line 2, column 14: the alias \*r refers to a node that contains it \(a configuration cannot loop\)",
    ):
        load_config(looped)


# ---------------------------------------------------------------------- missing keys
def test_a_missing_key_is_a_clear_public_error_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pickle
    import traceback

    from langchain_multigateway.errors import MissingAPIKeyError
    from langchain_multigateway.registry import MissingAPIKeyConfigError, init_gateway_model

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError) as info:
        init_gateway_model("openai:gpt-4o-mini")
    shown = traceback.format_exception_only(info.value)[-1]
    assert shown.startswith(
        "langchain_multigateway.registry.MissingAPIKeyConfigError: openai:gpt-4o-mini: No API key for openai:"
    )
    assert "set the OPENAI_API_KEY environment variable" in shown
    assert "_providers" not in shown
    assert "(model)" not in shown
    assert "cannot build" not in shown
    assert isinstance(info.value, MissingAPIKeyConfigError)
    assert str(pickle.loads(pickle.dumps(info.value))) == str(info.value)
    path = write(tmp_path, "models:\n  fast: openai:gpt-4o-mini\n")
    with pytest.raises(ConfigurationError) as located:
        load_config(path).build_model("fast")
    assert str(located.value).startswith(f"{path}, line 2, models.fast: No API key for openai:")


# ---------------------------------------------------------------------- router sections
def test_router_mistakes_are_reported_together_with_did_you_mean(tmp_path: Path) -> None:
    from langchain_multigateway.routing import router_from_config

    path = write(
        tmp_path,
        """
        models:
          fast: {provider: scripted, model: s-fast}
        routers:
          main:
            stratgy: ordered
            deployments:
              - {model: fast, weigth: 2}
              - {model: fsat}
              - {model: fast, name: again, rpm: lots}
        """,
    )
    with pytest.raises(ConfigurationError) as info:
        router_from_config(load_config(path), "main")
    assert info.value.problems == [
        "line 5, routers.main.stratgy: unknown key; did you mean 'strategy'? expected one of: breaker, budget, cache,"
        " deployments, failover, max_retries, max_wait, name, strategy, stream_recovery, timeout",
        "line 7, routers.main.deployments[0].weigth: unknown key; did you mean 'weight'? expected one of: "
        + ", ".join(sorted(("model", "params", *(k for k in _deployment_fields() if k != "model")))),
        "line 8, routers.main.deployments[1].model: no model named 'fsat'; did you mean 'fast'? declared: fast;"
        " or use provider:model",
        "line 9, routers.main.deployments[2].rpm: Input should be a valid integer, unable to parse string as an"
        " integer",
    ]
    assert str(info.value).startswith(f"{path}: 4 problems:")


def _deployment_fields() -> list[str]:
    from langchain_multigateway.routing.deployment import Deployment

    return list(Deployment.model_fields)
