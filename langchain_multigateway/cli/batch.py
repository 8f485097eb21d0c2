"""``multigateway batch INPUT.jsonl --out OUTPUT.jsonl``: many prompts, resumable.

Input rows are JSON objects, one a line: ``{"id": ..., "prompt": "..."}`` or
``{"id": ..., "messages": [{"role": "user", "content": "..."}]}``. A row without an
id gets its line number; a duplicate id is refused before anything runs.

Rows run through the model or router with bounded concurrency (``--concurrency``).
Each result is appended to OUTPUT as soon as it arrives (one write, then fsync), in
completion order: ``{"id", "output", "deployment", "provider", "model", "usage",
"latency_ms"}``, or ``{"id", "error": {"type", "message"}, "latency_ms"}`` for a
row that failed. Run the same command again to resume: ids already in OUTPUT are
skipped, and a last line cut short by an interruption is removed first.
``--retry-failed`` runs the failed rows again.

Exit code 0 when every row succeeded, 1 when some failed (they are in OUTPUT with
their error), 3 when the batch stopped early because the provider was unreachable
or refused the credentials, 130 when interrupted (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langchain_multigateway.cli._common import (
    add_generation_options,
    add_ledger_option,
    add_model_options,
    build_target,
    call_config,
    format_cost,
    generation_kwargs,
    open_ledger,
    quiet_price_warnings,
)
from langchain_multigateway.cli._errors import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    UsageError,
    exit_code_for,
)
from langchain_multigateway.cli._jsonl import Row, append_line, id_key, read_input, scan_output, without_failures

__all__ = ["Progress", "register", "run"]

_USAGE_KEYS = ("input_tokens", "output_tokens", "total_tokens")


class Progress:
    """A one-line progress report on stderr (redrawn on a terminal, every 10% otherwise)."""

    def __init__(self, total: int, *, quiet: bool = False, stream: Any = None) -> None:
        self.total, self.quiet = total, quiet
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.ok = self.failed = 0
        self.started = time.monotonic()
        self._drawn = 0.0
        self._step = -1
        self._shown = -1

    def update(self, ok: bool) -> None:
        if ok:
            self.ok += 1
        else:
            self.failed += 1
        self.draw()

    def line(self) -> str:
        done = self.ok + self.failed
        rate = done / max(time.monotonic() - self.started, 1e-6)
        return f"batch: {done}/{self.total} done, {self.failed} failed, {rate:.1f} rows/s"

    def draw(self, *, final: bool = False) -> None:
        if self.quiet or not self.total:
            return
        done = self.ok + self.failed
        if self.tty:
            now = time.monotonic()
            if final or now - self._drawn >= 0.1 or done == self.total:
                self._drawn = now
                self.stream.write("\r" + self.line() + ("\n" if final else ""))
                self.stream.flush()
            return
        step = done * 10 // self.total
        if step != self._step or (final and done != self._shown):
            self._step, self._shown = step, done
            self.stream.write(self.line() + "\n")
            self.stream.flush()


class _StopBatchError(Exception):
    """Too many consecutive unreachable/credential failures: stop launching rows."""


async def _one(
    model: Any, row: Row, config: dict[str, Any], kwargs: dict[str, Any]
) -> tuple[dict[str, Any], BaseException | None]:
    started = time.perf_counter()
    meta = {**config.get("metadata", {}), "batch_row_id": str(row.id)}
    try:
        message = await model.ainvoke(row.input, config={**config, "metadata": meta}, **kwargs)
    except Exception as exc:
        error = {"type": type(exc).__name__, "message": str(exc)}
        return {"id": row.id, "error": error, "latency_ms": _ms(started)}, exc
    info = message.response_metadata or {}
    usage = message.usage_metadata
    return {
        "id": row.id,
        "output": message.text,
        "deployment": info.get("deployment"),
        "provider": info.get("provider") or info.get("model_provider"),
        "model": info.get("model") or info.get("model_name"),
        "usage": None
        if usage is None
        else {k: usage.get(k) for k in ("input_tokens", "output_tokens", "total_tokens")},
        "latency_ms": _ms(started),
    }, None


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


async def _run_rows(
    model: Any, rows: list[Row], fd: int, args: argparse.Namespace, config: dict[str, Any], progress: Progress
) -> None:
    pending: Iterator[Row] = iter(rows)
    kwargs = generation_kwargs(args)
    limit = max(10, 2 * args.concurrency)
    streak = 0

    async def worker() -> None:
        nonlocal streak
        for row in pending:
            result, error = await _one(model, row, config, kwargs)
            append_line(fd, result, sync=not args.no_fsync)
            progress.update(error is None)
            if error is not None and exit_code_for(error) == EXIT_UNREACHABLE:
                streak += 1
                if streak >= limit:
                    raise _StopBatchError(f"{streak} rows in a row failed with {type(error).__name__}: {error}")
            else:
                streak = 0

    tasks = [asyncio.ensure_future(worker()) for _ in range(min(args.concurrency, len(rows)))]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _main(model: Any, rows: list[Row], fd: int, args: argparse.Namespace, config: dict[str, Any]) -> Any:
    from langchain_multigateway.usage import atrack_usage

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
        loop.add_signal_handler(signal.SIGTERM, task.cancel)  # type: ignore[union-attr]
    progress = Progress(len(rows), quiet=args.quiet)
    async with atrack_usage() as usage:
        try:
            await _run_rows(model, rows, fd, args, config, progress)
        except asyncio.CancelledError:
            progress.draw(final=True)
            raise KeyboardInterrupt from None
        except _StopBatchError as stop:
            progress.draw(final=True)
            return progress, usage, stop
        progress.draw(final=True)
    return progress, usage, None


def run(args: argparse.Namespace) -> int:
    if args.concurrency < 1:
        msg = f"--concurrency must be at least 1 (got {args.concurrency})"
        raise UsageError(msg)
    generation_kwargs(args)  # refuse bad values before reading anything
    rows = read_input(args.input)
    out = Path(args.out)
    if out.exists() and out.resolve() == Path(args.input).resolve():
        msg = "--out must not be the input file"
        raise UsageError(msg)
    if out.exists() and not out.is_file():
        # It is read back to resume (/dev/stdout would block on a terminal, /dev/full never ends)
        # and fsynced after each line (a device refuses: /dev/null failed with EINVAL).
        msg = f"--out must be a regular file (it is read back to resume a batch); {out} is not"
        raise UsageError(msg)
    if args.retry_failed and out.exists():
        dropped = without_failures(out)
        print(f"batch: {dropped} failed row(s) removed from {out} to run again", file=sys.stderr)
    done = scan_output(out)
    if done.repaired_bytes:
        print(
            f"batch: removed a partial last line ({done.repaired_bytes} bytes) left by an interruption", file=sys.stderr
        )
    if done.bad_lines:
        print(f"batch: warning: {done.bad_lines} unreadable line(s) in {out} ignored", file=sys.stderr)
    todo = [row for row in rows if id_key(row.id) not in done.ids]
    skipped = len(rows) - len(todo)
    print(f"batch: {len(rows)} rows in {args.input}; {skipped} already in {out}; {len(todo)} to run", file=sys.stderr)
    if not todo:
        return EXIT_FAILURE if done.failed & {id_key(r.id) for r in rows} else EXIT_OK
    model = build_target(args)
    ledger = open_ledger(args)
    config = call_config(args, [] if ledger is None else [_ledger_handler(ledger)])
    config["tags"] = ["cli", "batch"]
    config["max_concurrency"] = args.concurrency
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        with quiet_price_warnings():
            progress, usage, stop = asyncio.run(_main(model, todo, fd, args, config))
    except KeyboardInterrupt:
        written = len(scan_output(out).ids)
        print(f"\nbatch: interrupted; {written} rows are in {out}: run the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        os.close(fd)
        if ledger is not None:
            ledger.close()
    _summary(progress, usage, skipped, out)
    if stop is not None:
        print(f"batch: stopped early: {stop}; fix it, then rerun with --retry-failed", file=sys.stderr)
        return EXIT_UNREACHABLE
    return EXIT_FAILURE if progress.failed or done.failed else EXIT_OK


def _ledger_handler(ledger: Any) -> Any:
    from langchain_multigateway.usage import LedgerCallbackHandler

    return LedgerCallbackHandler(ledger)


def _summary(progress: Progress, usage: Any, skipped: int, out: Path) -> None:
    elapsed = time.monotonic() - progress.started
    print(
        f"batch: {progress.ok} ok, {progress.failed} failed, {skipped} skipped (already done) "
        f"in {elapsed:.1f} s; results in {out}"
    )
    print(usage.summary())
    print(format_cost(usage))


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "batch",
        parents=[common],
        help="run a JSONL file of prompts through a model or router (resumable)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", metavar="INPUT.jsonl", help="rows: {'id', 'prompt'} or {'id', 'messages'}")
    parser.add_argument("--out", required=True, metavar="OUTPUT.jsonl", help="results, appended as they arrive")
    parser.add_argument("--concurrency", type=int, default=4, metavar="N", help="calls in flight at once (default 4)")
    parser.add_argument("--retry-failed", action="store_true", help="run rows whose output holds an error again")
    parser.add_argument("--no-fsync", action="store_true", help="skip the fsync after each line (faster, less safe)")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    add_generation_options(parser)
    add_model_options(parser)
    add_ledger_option(parser)
    parser.set_defaults(handler=run)
