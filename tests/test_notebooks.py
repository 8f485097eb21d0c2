"""The notebooks run top to bottom from their cassettes (no key, no network) and are committed clean."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import RECORDING_API_KEY

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
NOTEBOOK_FILES = sorted(NOTEBOOKS.glob("*.ipynb"))
CASSETTE_FILES = sorted((NOTEBOOKS / "cassettes").glob("*.yaml"))
CANONICAL_URL = "http://127.0.0.1:8088/v1"

# What each notebook must show, as text found in its outputs.
EXPECTED: dict[str, list[str]] = {
    "01_quickstart": [
        "'model_provider': 'openai'",
        "last chunk position='last'",
        "OpenAIChatModel gemma-3-270m",
        "True",
    ],
    "02_routing_and_failover": [
        "served by gemma-local after 5 attempts",
        "hosted-503",
        "breaker=open",
        "AllDeploymentsFailedError",
        "round_robin: slow, medium, fast, slow, medium, fast",
        "least_latency: slow, medium, fast, fast, fast, fast",
    ],
    "03_structured_output_and_tools": [
        "City(name=",
        "'parsing_error': None",
        "'name': 'get_weather'",
        "['HumanMessage', 'AIMessage', 'ToolMessage']",
    ],
    "04_usage_and_cost": ["gpt-4o-mini", "mistral-small-latest", "gemma-local", "TOTAL", "cost_usd"],
    "05_agent": ["[gemma-local] calls [('get_weather'", "[scripted-writer]", "tools -> ['ToolMessage']"],
}
NEEDS_IMAGE = {"04_usage_and_cost"}
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|\x1b\[31m-{20,}")


@pytest.fixture(scope="session")
def python3_kernel() -> str:
    """The ``python3`` kernel, run by this interpreter (ipykernel's own spec in a fresh venv)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:  # pragma: no cover - ipykernel not installed as a kernel anywhere
        from ipykernel.kernelspec import install

        install(prefix=sys.prefix)
        spec = KernelSpecManager().get_kernel_spec("python3")
    # jupyter_client swaps a bare "python" for sys.executable; anything else would be another interpreter.
    assert spec.argv[0] in ("python", "python3", f"python3.{sys.version_info[1]}", sys.executable), spec.argv
    return "python3"


def _execute(path: Path, kernel: str) -> Any:
    nb = nbformat.read(path, as_version=4)
    env = {"MPLBACKEND": "Agg"}  # the kernel inherits it: no display needed for figures
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        client = nbclient.NotebookClient(
            nb, kernel_name=kernel, timeout=120, resources={"metadata": {"path": str(NOTEBOOKS)}}
        )
        client.execute()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return nb


def _text(output: Any) -> str:
    if output.get("output_type") == "stream":
        return str(output.get("text", ""))
    if output.get("output_type") == "error":
        return "\n".join(output.get("traceback", []))
    data = output.get("data", {})
    return str(data.get("text/plain", ""))


def test_there_are_five_notebooks() -> None:
    assert [p.stem for p in NOTEBOOK_FILES] == sorted(EXPECTED)


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_notebook_runs_from_cassettes(path: Path, python3_kernel: str) -> None:
    nb = _execute(path, python3_kernel)
    texts: list[str] = []
    images = 0
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            assert output.get("output_type") != "error", f"cell {index} raised:\n{_text(output)}"
            text = _text(output)
            assert not TRACEBACK.search(text), f"cell {index} printed a traceback or an error:\n{text}"
            images += "image/png" in output.get("data", {})
            texts.append(text)
    everything = "\n".join(texts)
    for expected in EXPECTED[path.stem]:
        assert expected in everything, f"{path.name}: {expected!r} not in its outputs"
    if path.stem in NEEDS_IMAGE:
        assert images >= 1, f"{path.name} showed no figure"


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_committed_notebook_has_no_outputs(path: Path) -> None:
    nb = json.loads(path.read_text(encoding="utf-8"))
    for index, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{path.name} cell {index} has outputs"
            assert cell.get("execution_count") is None, f"{path.name} cell {index} has an execution count"
    assert nb["metadata"]["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("path", CASSETTE_FILES, ids=lambda p: p.stem)
def test_notebook_cassette_is_scrubbed_and_canonical(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert RECORDING_API_KEY not in text
    assert not re.search(r"sk-[A-Za-z0-9_-]{16,}|Bearer\s+[A-Za-z0-9_.-]{8,}", text)
    data = yaml.safe_load(text)
    assert data["interactions"]
    for interaction in data["interactions"]:
        request = interaction["request"]
        assert request["uri"].startswith(CANONICAL_URL), request["uri"]
        for side in (request, interaction["response"]):
            headers = {k.lower(): v for k, v in (side.get("headers") or {}).items()}
            for name in {"authorization", "x-api-key", "api-key", "cookie", "set-cookie"} & headers.keys():
                assert headers[name] in (["PLACEHOLDER"], "PLACEHOLDER"), f"{path.name}: header {name} kept"


def test_each_notebook_with_server_calls_has_its_cassette() -> None:
    for path in NOTEBOOK_FILES:
        source = path.read_text(encoding="utf-8")
        match = re.search(r'cassettes\\"\) / \\"([\w.]+\.yaml)', source)
        if match:
            assert (NOTEBOOKS / "cassettes" / match.group(1)).exists(), f"{path.name} needs {match.group(1)}"
