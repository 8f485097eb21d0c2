"""Exceptions → one actionable line on stderr and an exit code."""

from __future__ import annotations

import sys

__all__ = [
    "EXIT_CODES_HELP",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "UsageError",
    "exit_code_for",
    "report",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """\
exit codes:
  0    ok
  1    runtime failure (a call failed; every deployment failed for another reason)
  2    usage or configuration error (bad arguments, input or config file; unknown
       provider or model; missing API key: the message names the variable to set)
  3    provider unreachable or credentials rejected (refused, timeout, HTTP 401/403)
  130  interrupted (Ctrl-C); batch resumes where it stopped when run again

Add --debug for the full traceback of an error."""


class UsageError(Exception):
    """The command line or an input file is wrong (exit code 2)."""


def _unreachable(exc: BaseException) -> bool:
    from langchain_multigateway.errors import (
        AllDeploymentsFailedError,
        AuthenticationError,
        GatewayConnectionError,
        GatewayTimeoutError,
        PermissionDeniedError,
    )

    if isinstance(exc, AllDeploymentsFailedError):
        return bool(exc.attempts) and all(a.error is not None and _unreachable(a.error) for a in exc.attempts)
    return isinstance(exc, (GatewayConnectionError, GatewayTimeoutError, AuthenticationError, PermissionDeniedError))


def exit_code_for(exc: BaseException) -> int:
    """The documented exit code for an exception."""
    from langchain_multigateway.errors import ConfigurationError

    if isinstance(exc, (UsageError, ConfigurationError)):
        return EXIT_USAGE
    if _unreachable(exc):
        return EXIT_UNREACHABLE
    return EXIT_FAILURE


def _hint(exc: BaseException) -> str:
    from langchain_multigateway.errors import (
        AuthenticationError,
        GatewayConnectionError,
        GatewayTimeoutError,
        PermissionDeniedError,
    )

    if isinstance(exc, (GatewayConnectionError, GatewayTimeoutError)):
        return "is the server running and its base_url right? (`multigateway health` checks every model)"
    if isinstance(exc, (AuthenticationError, PermissionDeniedError)):
        return "the provider refused the credentials: check the API key variable (e.g. OPENAI_API_KEY)"
    return ""


def message_for(exc: BaseException) -> str:
    """What to print for ``exc``: its own text for gateway errors, type and text otherwise."""
    from langchain_multigateway.errors import ConfigurationError, GatewayError

    if isinstance(exc, (UsageError, ConfigurationError)):
        return exc.message if isinstance(exc, ConfigurationError) else str(exc)
    text = str(exc) if isinstance(exc, GatewayError) else f"{type(exc).__name__}: {exc}"
    kind = f"{type(exc).__name__}: " if isinstance(exc, GatewayError) else ""
    hint = _hint(exc)
    return f"{kind}{text}" + (f"\n  hint: {hint}" if hint else "")


def report(exc: BaseException) -> int:
    """Print ``exc`` as ``error: ...`` on stderr (no traceback) and return its exit code."""
    print(f"error: {message_for(exc)}", file=sys.stderr)
    return exit_code_for(exc)
