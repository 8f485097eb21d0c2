"""``multigateway serve`` and ``multigateway keys`` as a user runs them: real processes, real ports.

The server process fronts the loopback STUB upstream. A key is created with the CLI,
then the openai SDK uses it; a wrong key gets 401; an exhausted budget 429; SIGTERM
lets a stream in flight finish; ``--workers 2`` warns that limits are per worker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.server.conftest import Upstream, free_port, write_config


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "langchain_multigateway", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "MULTIGATEWAY_KEYS": str(tmp_path / "keys.sqlite3"),
        "MULTIGATEWAY_LEDGER": str(tmp_path / "usage.sqlite3"),
        "MULTIGATEWAY_MASTER_KEY": "mg-master-cli-" + "x" * 24,
    }


def start(config: Path, env: dict[str, str], *extra: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "langchain_multigateway", "serve", "--config", str(config), "--port", str(port), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 150  # --workers 2 took 45-70 s to come up at load average 16-18
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"serve exited: {process.stderr.read() if process.stderr else ''}")
        try:
            if httpx.get(url + "/health/liveness", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("serve did not start")


@pytest.fixture
def served(upstream: Upstream, tmp_path: Path, env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], str]]:
    process, url = start(write_config(tmp_path, upstream.url), env)
    yield process, url
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=20)


def test_user_journey_keys_chat_stream_tools_structured_401_and_budget(
    served: tuple[subprocess.Popen[str], str], env: dict[str, str]
) -> None:
    process, url = served
    created = cli(
        "keys", "create", "--name", "team-a", "--models", "main", "--budget", "0.05", "--period", "30d", env=env
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.splitlines()[0]
    assert key.startswith("mg-")

    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    answer = client.chat.completions.create(model="main", messages=[{"role": "user", "content": "hello"}])
    assert answer.choices[0].message.content == "echo: hello"
    streamed = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(
            model="main", messages=[{"role": "user", "content": "streamed"}], stream=True
        )
        if chunk.choices
    )
    assert streamed == "echo: streamed"
    with pytest.raises(openai.RateLimitError) as budget:  # two calls at $0.03 spent the $0.05
        client.chat.completions.create(
            model="main",
            messages=[{"role": "user", "content": "weather?"}],
            tools=[{"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}],
        )
    assert "budget" in budget.value.message

    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url + "/v1", api_key="mg-wrong", max_retries=0).models.list()

    listed = cli("keys", "list", "--json", env=env)
    assert key not in listed.stdout
    (record,) = json.loads(listed.stdout)
    assert record["name"] == "team-a"
    usage = cli("keys", "usage", "team-a", "--json", env=env)
    assert json.loads(usage.stdout)["total"]["cost_usd"] == pytest.approx(0.06)
    assert cli("keys", "revoke", "team-a", env=env).returncode == 0
    time.sleep(1.1)  # a running server re-reads a key after its 1 s cache
    with pytest.raises(openai.AuthenticationError):
        client.models.list()

    process.terminate()
    _, stderr = process.communicate(timeout=20)
    # uvicorn shuts down cleanly, then re-raises SIGTERM so the exit status says why it stopped
    assert process.returncode in (0, -signal.SIGTERM)
    assert "Finished server process" in stderr
    assert key not in stderr
    for path in Path(env["MULTIGATEWAY_LEDGER"]).parent.glob("*.sqlite3*"):
        assert key.encode() not in path.read_bytes()


def test_tools_and_structured_output_through_the_process(
    served: tuple[subprocess.Popen[str], str], env: dict[str, str]
) -> None:
    _, url = served
    key = cli("keys", "create", "--name", "tools", env=env).stdout.splitlines()[0]
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
    called = client.chat.completions.create(
        model="failover", messages=[{"role": "user", "content": "Weather?"}], tools=[tool], tool_choice="required"
    )
    assert called.choices[0].message.tool_calls[0].function.name == "get_weather"
    structured = client.chat.completions.create(
        model="failover",
        messages=[{"role": "user", "content": "A city"}],
        response_format={
            "type": "json_schema",
            "json_schema": {
                "name": "City",
                "schema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
            },
        },
    )
    assert json.loads(structured.choices[0].message.content or "") == {"name": "Paris"}


def test_sigterm_lets_a_stream_in_flight_finish(served: tuple[subprocess.Popen[str], str], env: dict[str, str]) -> None:
    process, url = served
    key = cli("keys", "create", "--name", "shutdown", env=env).stdout.splitlines()[0]
    body = {"model": "slow", "stream": True, "messages": [{"role": "user", "content": "long"}]}
    lines: list[str] = []
    with httpx.stream(
        "POST", url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=30
    ) as response:
        for line in response.iter_lines():
            lines.append(line)
            if len(lines) == 4:
                process.send_signal(signal.SIGTERM)
    assert lines[-2:] == ["data: [DONE]", ""] or lines[-1] == "data: [DONE]"
    text = "".join(
        json.loads(line[6:])["choices"][0]["delta"].get("content") or "" for line in lines if line.startswith("data: {")
    )
    assert text == "".join(f"{i} " for i in range(50))  # every piece, none lost
    assert process.wait(timeout=20) in (0, -signal.SIGTERM)


def test_workers_warn_that_limits_are_per_worker(upstream: Upstream, tmp_path: Path, env: dict[str, str]) -> None:
    process, url = start(write_config(tmp_path, upstream.url), env, "--workers", "2")
    try:
        assert httpx.get(url + "/health/liveness").status_code == 200
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert "2 workers: breakers, rate windows and key limits are kept per worker" in stderr
    assert "no shared state backend" in stderr


def test_serve_refuses_a_bad_config_with_its_line(tmp_path: Path, env: dict[str, str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  fast:\n    model: openai:x\n    temperature: hot\n")
    result = cli("serve", "--config", str(bad), env=env)
    assert result.returncode == 2
    assert "models.fast.temperature" in result.stderr
    assert "line 4" in result.stderr
