"""Batch files: reading the input rows, and reading, repairing and appending to the output."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_multigateway.cli._errors import UsageError

__all__ = ["Done", "Row", "append_line", "id_key", "read_input", "scan_output", "without_failures"]

_ROLES = ("system", "user", "assistant", "human", "ai", "tool", "developer")


@dataclass(frozen=True)
class Row:
    """One input row: its id (given, or its line number), and what to send."""

    id: Any
    line: int
    input: str | list[dict[str, Any]]


def id_key(value: Any) -> str:
    """Ids compare as JSON: ``1`` and ``"1"`` are different ids."""
    return json.dumps(value, sort_keys=True)


def _messages(value: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        msg = f"{where}: 'messages' must be a non-empty list of {{'role': ..., 'content': ...}} objects"
        raise UsageError(msg)
    for index, item in enumerate(value):
        if not isinstance(item, dict) or item.get("role") not in _ROLES or "content" not in item:
            msg = f"{where}: messages[{index}] must be an object with 'role' ({', '.join(_ROLES)}) and 'content'"
            raise UsageError(msg)
    return value


def _row(data: Any, number: int, where: str) -> Row:
    if not isinstance(data, dict):
        msg = f"{where}: expected a JSON object with 'prompt' or 'messages' (and optionally 'id')"
        raise UsageError(msg)
    row_id = data.get("id", number)
    if row_id is None or isinstance(row_id, (dict, list, bool)):
        msg = f"{where}: 'id' must be a string or a number (got {json.dumps(row_id)})"
        raise UsageError(msg)
    if "messages" in data:
        return Row(row_id, number, _messages(data["messages"], where))
    prompt = data.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        msg = f"{where}: expected 'prompt' (a non-empty string) or 'messages'"
        raise UsageError(msg)
    return Row(row_id, number, prompt)


def _lines(data: bytes, source: Path) -> Iterable[tuple[int, str]]:
    """Numbered lines of a JSONL file, split at ``\\n`` only (JSON Lines' separator).

    ``str.splitlines`` would also split at U+2028, U+0085 and friends, which are
    valid unescaped inside JSON strings. Each line must be UTF-8 (a BOM is allowed
    on the first); a line that is not is refused with its number and byte column.
    """
    for number, raw in enumerate(data.split(b"\n"), 1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            msg = (
                f"{source}, line {number}: not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                "batch reads UTF-8 JSON Lines: re-encode the file, e.g. iconv -f LATIN1 -t UTF-8"
            )
            raise UsageError(msg) from None
        yield number, text.removesuffix("\r")


def read_input(path: str | os.PathLike[str]) -> list[Row]:
    """Every row of a JSONL input; a bad row or a duplicate id is a UsageError naming its line."""
    source = Path(path)
    try:
        data = source.read_bytes()
    except OSError as exc:
        msg = f"cannot read the input file {source}: {exc.strerror or exc}"
        raise UsageError(msg) from exc
    rows: list[Row] = []
    first_line: dict[str, int] = {}
    for number, line in _lines(data, source):
        if not line.strip():
            continue
        where = f"{source}, line {number}"
        try:
            data_row = json.loads(line)
        except ValueError as exc:
            msg = f"{where}: not valid JSON ({exc})"
            raise UsageError(msg) from None
        except RecursionError:  # json recurses once per nesting level
            msg = f"{where}: the JSON is nested too deeply to read"
            raise UsageError(msg) from None
        row = _row(data_row, number, where)
        key = id_key(row.id)
        if key in first_line:
            msg = (
                f"{where}: duplicate id {key} (first on line {first_line[key]}); ids must be unique so that "
                "a rerun can tell which rows are done"
            )
            raise UsageError(msg)
        first_line[key] = number
        rows.append(row)
    return rows


@dataclass
class Done:
    """What an existing output file holds."""

    ids: set[str]
    failed: set[str]
    repaired_bytes: int = 0
    bad_lines: int = 0


def scan_output(path: Path) -> Done:
    """Ids already written; a partial last line (an interrupted write) is cut off the file."""
    done = Done(set(), set())
    if not path.exists():
        return done
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        done.repaired_bytes = len(data) - end
        os.truncate(path, end)
    for raw in data[:end].splitlines():
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except ValueError:
            row = None
        if not isinstance(row, dict) or "id" not in row:
            done.bad_lines += 1
            continue
        key = id_key(row["id"])
        done.ids.add(key)
        if row.get("error") is not None:
            done.failed.add(key)
    return done


def without_failures(path: Path) -> int:
    """Rewrite ``path`` without its failed rows (atomically); returns how many were dropped."""
    kept: list[bytes] = []
    dropped = 0
    for raw in path.read_bytes().splitlines(keepends=True):
        try:
            row = json.loads(raw)
        except ValueError:
            row = None
        if isinstance(row, dict) and row.get("error") is not None:
            dropped += 1
        else:
            kept.append(raw)
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as handle:
        handle.writelines(kept)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return dropped


def append_line(fd: int, row: dict[str, Any], *, sync: bool = True) -> None:
    """Append one JSON line with a single write on an ``O_APPEND`` descriptor, then fsync it."""
    data = (json.dumps(row, ensure_ascii=False, default=str) + "\n").encode("utf-8")
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
    if sync:
        os.fsync(fd)


def ids_of(rows: Iterable[Row]) -> set[str]:
    return {id_key(r.id) for r in rows}
