"""Adversarial review of issue 11: each test is an attack that broke the landed code, kept so it stays fixed."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import pickle
import time
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.load import dumps
from pydantic import SecretStr

from langchain_multigateway import OpenAIChatModel
from langchain_multigateway._redact import redact, redact_value
from langchain_multigateway.chat_models.anthropic import AnthropicChatModel
from langchain_multigateway.chat_models.mistral import MistralChatModel
from langchain_multigateway.chat_models.ollama import OllamaChatModel
from langchain_multigateway.cli import main
from langchain_multigateway.config import load_config
from langchain_multigateway.errors import ConfigurationError, GatewayError, InvalidRequestError, ProviderError
from langchain_multigateway.usage import CallRecord, Ledger
from langchain_multigateway.usage import _ledger_writer as ledger_writer
from tests.loopback import Reply, chat_completion, serve, sse

pytest_plugins = ["pytester"]


# ---------------------------------------------------------------------- config files
def test_config_that_is_not_utf8_is_a_located_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_bytes(b"models:\n  a:\n    provider: openai\n    model: gpt\xff\xfe\n")
    with pytest.raises(ConfigurationError, match=r"line 4: the file is not UTF-8 text \(byte 0xff\)") as info:
        load_config(path, env={})
    assert info.value.line == 4


@pytest.mark.parametrize("nested", ["[" * 3000 + "]" * 3000, "{a: " * 3000 + "1" + "}" * 3000])
def test_config_nested_past_the_stack_is_a_configuration_error(tmp_path: Path, nested: str) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(f"models: {nested}\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="nested too deeply"):
        load_config(path, env={})


def test_a_repeated_model_name_is_refused_not_silently_dropped(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "models:\n  a:\n    provider: openai\n    model: gpt\n  a:\n    provider: mistral\n    model: m\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigurationError, match=r"line 5, models\.a: the key is repeated \(first at line 2\)") as info:
        load_config(path, env={})
    assert info.value.problems == ["line 5, models.a: the key is repeated (first at line 2); a key may appear once"]


def test_merge_keys_are_not_taken_for_repeated_keys(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "models:\n"
        "  a: &base {provider: openai, model: gpt, api_key: placeholder-key}\n"
        "  b:\n    <<: *base\n    model: other\n"
        "  c:\n    <<: [*base]\n    model: third\n",
        encoding="utf-8",
    )
    config = load_config(path, env={})
    assert sorted(config.models) == ["a", "b", "c"]
    assert config.models["b"].model == "other"


# ---------------------------------------------------------------------- ledger sidecar
def _record(model: str = "gpt-4o-mini") -> CallRecord:
    now = time.time()
    return CallRecord(
        run_id=str(uuid.uuid4()),
        started_at=now - 0.1,
        ended_at=now,
        latency_ms=100.0,
        provider="openai",
        model=model,
        deployment="primary",
        outcome="ok",
        input_tokens=10,
        output_tokens=5,
        total_tokens=15,
        cost_usd=1e-6,
        has_usage=True,
    )


def test_a_spill_racing_an_import_is_not_written_to_the_removed_sidecar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two ledgers on one file (as two processes): B opens the sidecar to append, A imports and
    removes it before B takes the lock. B's record must land in a sidecar that still exists."""
    db = tmp_path / "calls.sqlite3"
    with Ledger(db) as importer, Ledger(db) as spiller:
        spiller._writer.spill(_record("first"))  # a record waiting in the sidecar
        real_lock = ledger_writer._locked
        raced: list[bool] = []

        @contextlib.contextmanager
        def lock_after_an_import(handle: IO[str]) -> Iterator[None]:
            if not raced:
                raced.append(True)
                importer._writer.import_spill(wait=True)  # between the spiller's open and its lock
            with real_lock(handle):
                yield

        monkeypatch.setattr(ledger_writer, "_locked", lock_after_an_import)
        spiller._writer.spill(_record("second"))
        monkeypatch.undo()
        assert raced
        importer.flush()
        assert sorted(r["model"] for r in importer.records()) == ["first", "second"]


def test_a_corrupt_byte_in_the_sidecar_spoils_one_line_not_the_ledger(tmp_path: Path) -> None:
    db = tmp_path / "calls.sqlite3"
    spill = Path(str(db) + ".spill.jsonl")
    good = json.dumps({"spill_id": "a" * 32, "record": _record("kept").to_dict()})
    spill.write_bytes(good.encode() + b"\n" + b'{"spill_id": \xff\xfe broken\n')
    with Ledger(db) as ledger:  # opening imports the sidecar
        ledger.add(_record("later"))
        ledger.flush()
        assert sorted(r["model"] for r in ledger.records()) == ["kept", "later"]
    assert not spill.exists()
    assert "broken" in Path(str(spill) + ".rejected").read_text(encoding="utf-8")


# ---------------------------------------------------------------------- planted keys
def _planted(name: str) -> str:
    return f"PLANTED-{name}-" + "h4x0" * 6


def _echo_401(*keys: str) -> Reply:
    """A 401 quoting what it was sent, as OpenAI's "Incorrect API key provided: ..." does."""
    text = "Incorrect API key provided: " + ", ".join(keys)
    return Reply(401, {"error": {"message": text, "type": "authentication_error"}, "detail": text})


def _channels(model: BaseChatModel) -> dict[str, str]:
    """The model's displays, and the error of a call against the echoing server (text, traceback, pickle)."""
    texts = {"repr": repr(model), "model_dump": str(model.model_dump()), "dumps": dumps(model)}
    with pytest.raises(GatewayError) as info:
        model.invoke("hello")
    texts["error"] = "".join(traceback.format_exception(info.value))
    texts["pickle"] = pickle.dumps(info.value).decode("latin-1")
    return texts


def _leaked(texts: dict[str, str], key: str) -> list[str]:
    return [channel for channel, text in texts.items() if key in text]


def _provider_model(provider: str, url: str, api_key: str) -> BaseChatModel:
    root = url.removesuffix("/v1")
    if provider == "openai":
        return OpenAIChatModel(model="m", api_key=api_key, base_url=url, max_retries=0)
    if provider == "mistral":
        return MistralChatModel(model="m", api_key=api_key, server_url=root, max_retries=0)
    if provider == "anthropic":
        return AnthropicChatModel(model="m", api_key=api_key, base_url=root, max_retries=0)
    return OllamaChatModel(model="m", api_key=api_key, base_url=root, max_retries=0)


@pytest.mark.parametrize("provider", ["openai", "mistral", "anthropic", "ollama"])
def test_a_key_set_after_construction_is_masked_too(provider: str) -> None:
    late = _planted(f"late-{provider}")
    with serve(_echo_401(late)) as (url, _):
        model = _provider_model(provider, url, "placeholder-key-0")
        model.api_key = SecretStr(late)  # type: ignore[attr-defined]
        texts = _channels(model)
    assert "**********" in texts["error"]
    assert not _leaked(texts, late)


@pytest.mark.parametrize("header", ["X-Auth-Key", "Ocp-Apim-Subscription-Key", "Helicone-Auth", "X-Access-Key"])
def test_credential_headers_known_by_their_name_are_masked(header: str) -> None:
    key = _planted(header)
    with serve(_echo_401(key)) as (url, script):
        model = OpenAIChatModel(
            model="m",
            api_key="placeholder-key-0",
            base_url=url,
            max_retries=0,
            default_headers={header: key, "X-Trace": "trace-visible"},
        )
        texts = _channels(model)
        assert script.requests[0]["headers"][header.lower()] == key  # sent as given
    assert not _leaked(texts, key)
    assert "trace-visible" in texts["repr"]


@pytest.mark.parametrize("name", ["subscription-key", "sig", "auth", "code"])
def test_credential_query_parameters_known_by_their_name_are_masked(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    key = _planted(name)
    with serve(_echo_401(key)) as (url, _):
        model = OpenAIChatModel(
            model="m",
            api_key="placeholder-key-0",
            base_url=url,
            max_retries=0,
            default_query={name: key, "api-version": "2024-10-21"},
        )
        with caplog.at_level(logging.DEBUG):
            texts = _channels(model)
    texts["logs"] = caplog.text
    assert key not in str(texts), _leaked(texts, key)
    assert "2024-10-21" in texts["repr"]


def test_a_key_under_an_unknown_argument_or_in_model_kwargs_is_masked() -> None:
    typo, nested = _planted("openai-key"), _planted("extra-header")
    with serve(_echo_401(typo, nested)) as (url, script):
        with pytest.warns(UserWarning, match="openai_key"):
            model = OpenAIChatModel(
                model="m",
                api_key="placeholder-key-0",
                base_url=url,
                max_retries=0,
                openai_key=typo,  # not an argument: sent along in the body (LangChain's convention)
                model_kwargs={"extra_headers": {"X-Auth-Key": nested}},
            )
        texts = _channels(model)
        assert script.requests[0]["body"]["openai_key"] == typo
    assert not _leaked(texts, typo)
    assert not _leaked(texts, nested)


def test_userinfo_is_masked_as_the_server_decodes_it_and_as_basic_credentials() -> None:
    password = "pw-" + "h4x0" * 4 + "@and%more"
    encoded = password.replace("%", "%25").replace("@", "%40")
    basic = base64.b64encode(f"gateway:{password}".encode()).decode()
    with serve(Reply(401, {"error": {"message": f"bad credentials {password} (sent {basic})"}})) as (url, script):
        base = url.replace("http://", f"http://gateway:{encoded}@")
        texts = _channels(OpenAIChatModel(model="m", api_key="placeholder-key-0", base_url=base, max_retries=0))
        assert script.requests[0]["headers"]["authorization"] == f"Basic {basic}"  # httpx sends the userinfo
    assert not _leaked(texts, password)
    assert not _leaked(texts, basic)


# ---------------------------------------------------------------------- malformed answers
def _ndjson(*lines: bytes) -> Reply:
    return Reply(200, b"".join(line + b"\n" for line in lines), content_type="application/x-ndjson")


@pytest.mark.parametrize("use_async", [False, True])
def test_ollama_stream_whose_closing_counts_are_not_numbers_is_a_provider_error(use_async: bool) -> None:
    """Ollama's wire format: NDJSON lines, the last with done=true and the token counts."""
    reply = _ndjson(
        b'{"model":"m","message":{"role":"assistant","content":"Hi"},"done":false}',
        b'{"model":"m","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop",'
        b'"prompt_eval_count":"many","eval_count":1}',
    )
    with serve(reply) as (url, _):
        model = OllamaChatModel(model="m", base_url=url.removesuffix("/v1"), max_retries=0)

        async def astream() -> None:
            async for _ in model.astream("hello"):
                pass

        with pytest.raises(ProviderError, match="closing event is malformed") as info:
            asyncio.run(astream()) if use_async else list(model.stream("hello"))
    assert info.value.retryable


# ---------------------------------------------------------------------- CLI input
def test_batch_row_nested_past_the_stack_is_a_usage_error_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "deep.jsonl"
    source.write_bytes(
        b'{"id": 1, "prompt": "ok"}\n{"id": 2, "prompt": "x", "extra": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"
    )
    out = tmp_path / "out.jsonl"
    assert main(["batch", str(source), "--out", str(out), "--model", "scripted:s", "--quiet"]) == 2
    assert f"{source}, line 2: the JSON is nested too deeply to read" in capsys.readouterr().err
    assert not out.exists() or out.read_text() == ""


@pytest.mark.parametrize("use_async", [False, True])
@pytest.mark.parametrize("provider", ["openai", "mistral"])
def test_a_chat_completions_stream_of_done_alone_is_no_answer(provider: str, use_async: bool) -> None:
    """OpenAI's stream format: ``data:`` events then ``data: [DONE]``. A [DONE] with no choice
    before it (a proxy that lost the body) must not pass for an empty answer."""
    usage_only = {"id": "x", "object": "chat.completion.chunk", "model": "m", "choices": [], "usage": None}
    with serve(sse(usage_only)) as (url, _):
        model = _provider_model(provider, url, "placeholder-key-0")

        async def astream() -> None:
            async for _ in model.astream("hello"):
                pass

        with pytest.raises(ProviderError, match="the answer is incomplete") as info:
            asyncio.run(astream()) if use_async else list(model.stream("hello"))
    assert info.value.retryable


# ---------------------------------------------------------------------- cassettes
CASSETTE_TEST = """
import json, os
import pytest
from langchain_multigateway import OpenAIChatModel

@pytest.mark.gateway_cassette
def test_call():
    keys = json.loads(os.environ["PLANTED"])
    model = OpenAIChatModel(
        model="m", api_key="placeholder-key-0", base_url=os.environ["STUB_URL"], max_retries=0,
        default_headers={"X-Auth-Key": keys["header"], "Helicone-Auth": "Bearer " + keys["bearer"]},
    )
    assert model.invoke("hello").content
"""


def test_cassettes_hold_no_credential_header_the_providers_did_not_declare(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = {"header": _planted("cassette-header"), "bearer": _planted("cassette-bearer")}
    pytester.makepyfile(test_user=CASSETTE_TEST)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    with serve(Reply(200, chat_completion("recorded"))) as (url, script):
        monkeypatch.setenv("PLANTED", json.dumps(keys))
        monkeypatch.setenv("STUB_URL", url)
        result = pytester.runpytest_subprocess("--gateway-record-mode=all", "-p", "no:cacheprovider")
        assert script.requests[0]["headers"]["x-auth-key"] == keys["header"]  # sent as given
    result.assert_outcomes(passed=1)
    text = (pytester.path / "cassettes" / "test_user" / "test_call.yaml").read_text()
    assert "recorded" in text
    assert [name for name, key in keys.items() if key in text] == []


def test_usage_on_a_file_that_is_no_ledger_names_it_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "usage.sqlite3"
    path.write_bytes(b"this is not SQLite, " * 300)
    assert main(["usage", "--ledger", str(path)]) == 2
    assert f"error: cannot read the usage ledger at {path}: file is not a database" in capsys.readouterr().err


# ---------------------------------------------------------------------- constructor arguments
@pytest.mark.parametrize(
    ("cls", "name", "expected"),
    [
        (OpenAIChatModel, "api_base", "base_url"),
        (OpenAIChatModel, "url", "base_url"),
        (OpenAIChatModel, "endpoint", "base_url"),
        (AnthropicChatModel, "api_url", "base_url"),
        (MistralChatModel, "api_url", "server_url"),
        (MistralChatModel, "host", "server_url"),
    ],
)
def test_an_unknown_address_argument_is_refused_not_sent_to_the_hosted_api(
    cls: type[BaseChatModel], name: str, expected: str
) -> None:
    """Going to model_kwargs, ``api_base=`` would be ignored by the server and the prompt sent to
    the default hosted API: refused like a one-edit typo, naming the argument to use."""
    with pytest.raises(ConfigurationError, match=rf"has no argument '{name}': did you mean '{expected}'\?"):
        cls(model="m", api_key="placeholder-key-0", **{name: "http://127.0.0.1:8088/v1"})


def test_langchain_arguments_and_body_fields_are_still_accepted() -> None:
    with pytest.warns(UserWarning, match="prompt_cache_key"):
        model = OpenAIChatModel(
            model_name="m",
            openai_api_key="placeholder-key-0",
            openai_api_base="http://127.0.0.1:8088/v1",
            max_retries=1,
            streaming=True,
            disable_streaming=False,
            output_version="v1",
            tags=["t"],
            metadata={"m": 1},
            prompt_cache_key="conversation-7",  # a real request field: sent along
        )
    assert model.base_url == "http://127.0.0.1:8088/v1"
    assert model.model_kwargs == {"prompt_cache_key": "conversation-7"}


def test_a_key_given_to_model_copy_is_masked_too() -> None:
    copied = _planted("model-copy")
    with serve(_echo_401(copied)) as (url, _):
        model = OpenAIChatModel(model="m", api_key="placeholder-key-0", base_url=url, max_retries=0)
        texts = _channels(model.model_copy(update={"api_key": SecretStr(copied)}))
    assert "**********" in texts["error"]
    assert not _leaked(texts, copied)


def test_an_error_code_field_stays_readable_and_a_masked_url_keeps_its_closing_bracket() -> None:
    body = {"error": {"code": "context_length_exceeded", "message": "too long"}}
    assert redact_value(body) == body  # "code" is a credential in a URL query only
    text = "Connection error. [server http://127.0.0.1:1/v1?code=abcdefgh12345678] (provider=openai)"
    assert redact(text) == "Connection error. [server http://127.0.0.1:1/v1?code=**********] (provider=openai)"


@pytest.mark.parametrize("target", ["/dev/full", "/dev/null", "directory"])
def test_batch_output_that_is_no_regular_file_is_refused_before_reading_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    """The output is read back to resume: /dev/full (or /dev/stdout on a terminal) would never
    finish reading; /dev/null and a directory failed late with an obscure OSError, exit 1."""
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": 1, "prompt": "hi"}\n', encoding="utf-8")
    out = str(tmp_path) if target == "directory" else target
    assert main(["batch", str(source), "--out", out, "--model", "scripted:s", "--quiet", "--no-ledger"]) == 2
    assert f"--out must be a regular file (it is read back to resume a batch); {out} is not" in capsys.readouterr().err


@pytest.mark.parametrize("provider", ["openai", "anthropic", "ollama"])
def test_a_prompt_that_is_not_valid_unicode_is_an_invalid_request_not_a_server_fault(provider: str) -> None:
    """A lone surrogate (json.loads gives one for a "\\ud800" escape) cannot be encoded: the
    caller's input is wrong, so no retry, and the message must not blame the server."""
    with serve(Reply(200, chat_completion("ok"))) as (url, script):
        model = _provider_model(provider, url, "placeholder-key-0")
        with pytest.raises(InvalidRequestError, match="not valid Unicode") as info:
            model.invoke("bad \ud800 text")
        assert script.requests == []  # nothing reached the server
    assert not info.value.retryable
    assert "server" not in info.value.message
