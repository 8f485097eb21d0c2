"""notebooks/README.md's commands are installed by the extra it names (no Jupyter command left uninstalled)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")

ROOT = Path(__file__).resolve().parents[2]

# The distribution that provides each command notebooks/README.md runs.
COMMANDS = {"jupyter lab": "jupyterlab", "jupyter nbconvert": "nbconvert", "pytest": "pytest"}


def _requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].strip().lower() for r in requirements}


def test_every_command_of_the_notebooks_readme_is_installed_by_the_extra_it_names() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    text = (ROOT / "notebooks" / "README.md").read_text()
    installs = re.findall(r'pip install -e "\.\[(\w+)\]"', text)
    assert installs, "notebooks/README.md names no extra to install"
    installed = set().union(*(_requirement_names(extras[name]) for name in installs))
    used = [command for command in COMMANDS if re.search(rf"^{command}\b|`{command}\b", text, re.MULTILINE)]
    assert "jupyter lab" in used
    assert "jupyter nbconvert" in used
    missing = [command for command in used if COMMANDS[command] not in installed]
    assert missing == [], f"{missing} not installed by the extras {installs}"
    assert {"jupyterlab", "nbconvert", "ipykernel"} <= _requirement_names(extras["notebooks"])
