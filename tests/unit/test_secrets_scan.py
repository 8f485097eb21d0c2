"""Planted-key scan: no credential reaches any output channel, for every provider and the router.

Each subject is built with distinctive keys (``api_key=``, a credential header, an
Azure-style ``?api-key=`` query value, ``user:key@`` userinfo in the base URL) and
pointed at a real loopback HTTP server that answers 401 with a body echoing every key,
the way OpenAI's "Incorrect API key provided: sk-..." does. Every channel a key could
leak through is then scanned: the model's repr/str/model_dump/dumps/dumpd, the raised
error's str/repr/traceback/pickle (invoke, stream, astream and ainvoke), health probes, log records of every logger at
DEBUG (httpx's request line carries the query string), OpenTelemetry spans (with the
exception event), the Prometheus registry, ledger rows, and cassettes the pytest plugin
writes (its own test below).
"""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.load import dumpd, dumps
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest

from langchain_multigateway import OpenAIChatModel
from langchain_multigateway.chat_models.anthropic import AnthropicChatModel
from langchain_multigateway.chat_models.mistral import MistralChatModel
from langchain_multigateway.chat_models.ollama import OllamaChatModel
from langchain_multigateway.routing import Deployment, RoutingChatModel
from langchain_multigateway.telemetry import OpenTelemetryCallbackHandler, PrometheusCallbackHandler
from langchain_multigateway.usage import Ledger, LedgerCallbackHandler
from tests.loopback import Reply, serve

pytest_plugins = ["pytester"]

# Imported here, before any in-process pytester run: modules first imported inside one are
# dropped from sys.modules afterwards, and later tests would then mix two copies of the SDKs.
import httpcore2  # noqa: E402, F401
import httpx2  # noqa: E402, F401
import mistralai.client  # noqa: E402, F401
import openai  # noqa: E402, F401


def _key(name: str) -> str:
    # URL-safe (it also goes into userinfo and query strings) and unmistakable.
    return f"PLANTED-{name}-" + "7xQ9" * 6


KEYS = {
    "openai": "sk-" + _key("openai"),
    "mistral": _key("mistral"),
    "anthropic": "sk-ant-" + _key("anthropic"),
    "ollama": _key("ollama"),
    "compat_api_key": _key("compat-apikey"),
    "compat_header": _key("compat-header"),
    "compat_query": _key("compat-query"),
    "compat_userinfo": _key("compat-userinfo"),
}
SUBJECTS = ("openai", "mistral", "anthropic", "ollama", "compatible", "router")
MODEL_CHANNELS = ("repr", "str", "model_dump", "model_dump_json", "dumps", "dumpd")
CALL_CHANNELS = (
    "error_str",
    "error_repr",
    "error_traceback",
    "error_pickle",
    "stream_error_traceback",
    "async_error_traceback",
    "health",
    "logs",
    "otel_spans",
    "prometheus",
    "ledger",
)


def echo_401(keys: list[str]) -> Reply:
    """A 401 whose body quotes the credentials it was sent (as OpenAI's does)."""
    text = "Incorrect API key provided: " + ", ".join(keys)
    return Reply(
        401,
        {
            "error": {"message": text, "type": "authentication_error", "code": "invalid_api_key"},
            "type": "error",
            "detail": text,
        },
    )


def leaks(text: str | bytes) -> list[str]:
    """Names of the planted keys found in ``text``."""
    data = text if isinstance(text, bytes) else text.encode("utf-8", "replace")
    return [name for name, key in KEYS.items() if key.encode() in data]


@dataclass
class Outputs:
    """Everything one subject produced on every channel, as text."""

    texts: dict[str, str | bytes] = field(default_factory=dict)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def build(subject: str, urls: dict[str, str]) -> BaseChatModel:
    if subject == "openai":
        return OpenAIChatModel(model="gpt-4o-mini", api_key=KEYS["openai"], base_url=urls["openai"], max_retries=0)
    if subject == "mistral":
        return MistralChatModel(
            model="mistral-small-latest", api_key=KEYS["mistral"], server_url=urls["mistral"], max_retries=0
        )
    if subject == "anthropic":
        return AnthropicChatModel(
            model="claude-haiku-4-5", api_key=KEYS["anthropic"], base_url=urls["anthropic"], max_retries=0
        )
    if subject == "ollama":
        return OllamaChatModel(
            model="llama3.2", api_key=KEYS["ollama"], base_url=urls["ollama"].removesuffix("/v1"), max_retries=0
        )
    if subject == "compatible":
        base = urls["compatible"].replace("http://", f"http://gateway:{KEYS['compat_userinfo']}@")
        return OpenAIChatModel(
            model="gemma",
            api_key=KEYS["compat_api_key"],
            base_url=base,
            default_headers={"api-key": KEYS["compat_header"], "x-trace": "visible"},
            default_query={"api-key": KEYS["compat_query"], "api-version": "2024-10-21"},
            max_retries=0,
        )
    assert subject == "router"
    deployments = [
        Deployment(model=build(name, urls), name=name) for name in ("openai", "mistral", "anthropic", "ollama")
    ]
    deployments.append(Deployment(model=build("compatible", urls), name="compatible"))
    return RoutingChatModel(deployments=deployments)


def _error_of(fn: Any) -> BaseException:
    try:
        fn()
    except Exception as exc:
        return exc
    msg = "the call was expected to fail with 401"
    raise AssertionError(msg)


async def _async_errors(model: BaseChatModel, callbacks: list[Any]) -> list[BaseException]:
    async def stream() -> None:
        async for _ in model.astream("hello", config={"callbacks": callbacks}):
            pass

    errors = []
    for call in (stream(), model.ainvoke("hello", config={"callbacks": callbacks})):
        try:
            await call
        except Exception as exc:
            errors.append(exc)
    assert len(errors) == 2, "both async calls were expected to fail with 401"
    return errors


def _health(model: BaseChatModel) -> str:
    """What a health probe reports (each provider's models endpoint answers the same 401)."""
    router = isinstance(model, RoutingChatModel)
    text = repr(model.health(check_providers=True) if router else model.health_check())  # type: ignore[attr-defined]
    assert "401" in text or "uthenticat" in text, text
    return text


def collect(model: BaseChatModel) -> Outputs:
    out = Outputs()
    out.texts["repr"] = repr(model)
    out.texts["str"] = str(model)
    out.texts["model_dump"] = str(model.model_dump())
    out.texts["model_dump_json"] = model.model_dump_json(fallback=repr)  # the router holds non-JSON state
    out.texts["dumps"] = dumps(model)
    out.texts["dumpd"] = str(dumpd(model))

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    registry = CollectorRegistry()
    ledger = Ledger(":memory:")
    callbacks = [
        OpenTelemetryCallbackHandler(tracer_provider=tracer_provider, capture_content=True),
        PrometheusCallbackHandler(registry=registry),
        LedgerCallbackHandler(ledger),
    ]
    capture = _Capture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    try:
        error = _error_of(lambda: model.invoke("hello", config={"callbacks": callbacks}))
        stream_error = _error_of(lambda: list(model.stream("hello", config={"callbacks": callbacks})))
        async_errors = asyncio.run(_async_errors(model, callbacks))
        health = _health(model)
        logging.getLogger("scan").error("call failed", exc_info=error)
    finally:
        root.removeHandler(capture)
        root.setLevel(old_level)
    out.texts["error_str"] = str(error)
    out.texts["error_repr"] = repr(error)
    out.texts["error_traceback"] = "".join(traceback.format_exception(error))
    out.texts["error_pickle"] = pickle.dumps(error)
    out.texts["stream_error_traceback"] = "".join(traceback.format_exception(stream_error))
    out.texts["async_error_traceback"] = "".join("".join(traceback.format_exception(e)) for e in async_errors)
    out.texts["health"] = health
    out.texts["logs"] = "\n".join(capture.lines)
    out.texts["otel_spans"] = "\n".join(span.to_json() for span in exporter.get_finished_spans())
    out.texts["prometheus"] = generate_latest(registry)
    ledger.flush()
    out.texts["ledger"] = repr(ledger.records())
    ledger.close()
    tracer_provider.shutdown()
    return out


@pytest.fixture(scope="module")
def outputs() -> Iterator[dict[str, Outputs]]:
    names = ("openai", "mistral", "anthropic", "ollama", "compatible")
    servers = []
    urls: dict[str, str] = {}
    try:
        for name in names:
            keys = [k for n, k in KEYS.items() if n == name or (name == "compatible" and n.startswith("compat"))]
            server = serve(echo_401(keys))
            url, _ = server.__enter__()
            servers.append(server)
            urls[name] = url
        yield {subject: collect(build(subject, urls)) for subject in SUBJECTS}
    finally:
        for server in servers:
            server.__exit__(None, None, None)


@pytest.mark.parametrize("channel", MODEL_CHANNELS + CALL_CHANNELS)
@pytest.mark.parametrize("subject", SUBJECTS)
def test_no_planted_key_in_output(outputs: dict[str, Outputs], subject: str, channel: str) -> None:
    text = outputs[subject].texts[channel]
    assert text, f"{subject}/{channel} produced nothing to scan"
    found = leaks(text)
    assert not found, f"{subject}/{channel} leaks {found}"


def test_the_scan_sees_the_keys_where_they_must_be(outputs: dict[str, Outputs]) -> None:
    # The 401 did reach each provider (so the error channels were really exercised):
    # the error names it, and the logs hold httpx's request lines.
    for subject in SUBJECTS:
        texts = outputs[subject].texts
        assert "401" in str(texts["error_str"]) or "uthenticat" in str(texts["error_repr"]), subject
    assert "HTTP Request" in str(outputs["compatible"].texts["logs"])


def test_connection_error_hides_userinfo_and_query_key() -> None:
    with serve(Reply()) as (url, _):
        closed = url  # the server is gone after this block: a refused connection
    model = build("compatible", {"compatible": closed})
    error = _error_of(lambda: model.invoke("hello"))
    text = "".join(traceback.format_exception(error)) + repr(error)
    assert "could not reach" in str(error) or "onnect" in str(error)
    assert not leaks(text)
    assert "127.0.0.1" in str(error)  # where it went is still said, minus the credentials


# ---------------------------------------------------------------------- cassettes (the pytest plugin)
CASSETTE_TEST = """
import json
import os

import pytest

from langchain_multigateway import OpenAIChatModel
from langchain_multigateway.chat_models.anthropic import AnthropicChatModel
from langchain_multigateway.chat_models.mistral import MistralChatModel
from langchain_multigateway.chat_models.ollama import OllamaChatModel

KEYS = json.loads(os.environ["PLANTED"])
URLS = json.loads(os.environ["STUB_URLS"])


def models():
    userinfo_url = URLS["compatible"].replace("http://", "http://gateway:" + KEYS["compat_userinfo"] + "@")
    return {
        "openai": OpenAIChatModel(model="gpt-4o-mini", api_key=KEYS["openai"], base_url=URLS["openai"]),
        "mistral": MistralChatModel(model="mistral-small-latest", api_key=KEYS["mistral"], server_url=URLS["mistral"]),
        "anthropic": AnthropicChatModel(
            model="claude-haiku-4-5", api_key=KEYS["anthropic"], base_url=URLS["anthropic"]
        ),
        "ollama": OllamaChatModel(model="llama3.2", api_key=KEYS["ollama"], base_url=URLS["ollama"][:-3]),
        "compatible": OpenAIChatModel(
            model="gemma",
            api_key=KEYS["compat_api_key"],
            base_url=userinfo_url,
            default_headers={"api-key": KEYS["compat_header"]},
            default_query={"api-key": KEYS["compat_query"]},
        ),
    }


@pytest.mark.gateway_cassette
@pytest.mark.parametrize("name", ["openai", "mistral", "anthropic", "ollama", "compatible"])
def test_call(name):
    model = models()[name].model_copy(update={"max_retries": 0})
    with pytest.raises(Exception, match="401|Incorrect"):
        model.invoke("hello")
"""


def test_cassettes_written_by_the_plugin_hold_no_key(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:

    # Fresh keys (not the module's): only the models built inside the recorded test know them,
    # and they are passed as api_key= / default_query / userinfo, never as *_API_KEY variables.
    planted = {name: key.replace("PLANTED-", "CASSETTE-") for name, key in KEYS.items()}
    for var in ("OPENAI_API_KEY", "MISTRAL_API_KEY", "ANTHROPIC_API_KEY", "OLLAMA_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    pytester.makepyfile(test_user=CASSETTE_TEST)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    servers = []
    urls: dict[str, str] = {}
    try:
        for name in ("openai", "mistral", "anthropic", "ollama", "compatible"):
            keys = [k for n, k in planted.items() if n == name or (name == "compatible" and n.startswith("compat"))]
            server = serve(echo_401(keys))
            urls[name], _ = server.__enter__()
            servers.append(server)
        monkeypatch.setenv("PLANTED", json.dumps(planted))
        monkeypatch.setenv("STUB_URLS", json.dumps(urls))
        result = pytester.runpytest("--gateway-record-mode=all", "-p", "no:cacheprovider")
    finally:
        for server in servers:
            server.__exit__(None, None, None)
    result.assert_outcomes(passed=5)
    cassettes = sorted((pytester.path / "cassettes" / "test_user").glob("*.yaml"))
    assert len(cassettes) == 5
    for path in cassettes:
        text = path.read_text()
        assert "Incorrect API key provided" in text  # the 401 body was recorded...
        found = [name for name, key in planted.items() if key in text]
        assert not found, f"{path.name} holds {found}"  # ...without the keys it echoed
        assert "api-key=" not in text.replace("api-key=**********", "")
