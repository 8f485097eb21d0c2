"""The shipped pytest plugin: record, replay, scrub, and a clear failure for a missing recording.

Each case runs a small test file under pytester against a scripted loopback server.
"""

from __future__ import annotations

import pytest
import yaml

from tests.loopback import Reply, chat_completion, serve

pytest_plugins = ["pytester"]

# Imported here, before any in-process pytester run: modules first imported inside one are
# dropped from sys.modules afterwards, and later tests would then mix two copies of the SDKs.
import httpcore2  # noqa: E402, F401
import httpx2  # noqa: E402, F401
import mistralai.client  # noqa: E402, F401
import openai  # noqa: E402, F401

SECRET = "sk-plugin-test-secret-abcdefghijklmnop"

TEST_FILE = """
import os
import pytest
from langchain_multigateway import OpenAIChatModel

@pytest.mark.gateway_cassette
def test_answer():
    llm = OpenAIChatModel(model="stub-model", base_url=os.environ["STUB_URL"], max_retries=0)
    reply = llm.invoke(os.environ.get("QUESTION", "what is 2+2?"))
    assert reply.content == "four"
"""


INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pytester.makepyfile(test_user=TEST_FILE)
    pytester.makeini(INI)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    return pytester


def _cassette(pytester: pytest.Pytester) -> str:
    return (pytester.path / "cassettes" / "test_user" / "test_answer.yaml").read_text()


def test_record_then_replay_without_the_server(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(Reply(body=chat_completion("four"))) as (url, script):
        monkeypatch.setenv("STUB_URL", url)
        recorded = project.runpytest("--gateway-record-mode=once", "-p", "no:cacheprovider")
        recorded.assert_outcomes(passed=1)
    assert len(script.requests) == 1
    text = _cassette(project)
    assert "what is 2+2?" in text
    # Server gone and no key: the replay needs neither.
    monkeypatch.delenv("OPENAI_API_KEY")
    replayed = project.runpytest("-p", "no:cacheprovider")
    replayed.assert_outcomes(passed=1)


def test_cassette_is_scrubbed_of_keys(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    echo = chat_completion("four")
    echo["echo_of_key"] = SECRET  # a server that leaks the key back must not leak it into the file
    with serve(Reply(body=echo, headers={"set-cookie": "session=abc"})) as (url, _):
        monkeypatch.setenv("STUB_URL", url)
        project.runpytest("--gateway-record-mode=once", "-p", "no:cacheprovider").assert_outcomes(passed=1)
    text = _cassette(project)
    assert SECRET not in text
    data = yaml.safe_load(text)
    request_headers = {k.lower(): v for k, v in data["interactions"][0]["request"]["headers"].items()}
    assert request_headers["authorization"] == ["PLACEHOLDER"]
    response_headers = {k.lower() for k in data["interactions"][0]["response"]["headers"]}
    assert "set-cookie" not in response_headers


def test_missing_recording_fails_naming_the_request(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(Reply(body=chat_completion("four"))) as (url, _):
        monkeypatch.setenv("STUB_URL", url)
        project.runpytest("--gateway-record-mode=once", "-p", "no:cacheprovider").assert_outcomes(passed=1)
        monkeypatch.setenv("QUESTION", "a question never recorded")
        result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "No recording for POST" in out
    assert "/v1/chat/completions" in out
    assert "a question never recorded" in out
    assert "--gateway-record-mode" in out


def test_record_mode_from_environment_and_bad_mode(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(Reply(body=chat_completion("four"))) as (url, _):
        monkeypatch.setenv("STUB_URL", url)
        monkeypatch.setenv("MULTIGATEWAY_RECORD_MODE", "all")
        project.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert "what is 2+2?" in _cassette(project)
    monkeypatch.setenv("MULTIGATEWAY_RECORD_MODE", "sometimes")
    result = project.runpytest("-p", "no:cacheprovider")
    assert "is not a record mode" in result.stdout.str() + result.stderr.str()


def test_cassette_dir_from_ini(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    project.makeini(INI + "gateway_cassette_dir = recorded\n")
    with serve(Reply(body=chat_completion("four"))) as (url, _):
        monkeypatch.setenv("STUB_URL", url)
        project.runpytest("--gateway-record-mode=once", "-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert (project.path / "recorded" / "test_user" / "test_answer.yaml").is_file()
