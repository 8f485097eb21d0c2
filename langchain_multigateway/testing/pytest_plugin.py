"""pytest plugin: record and replay the gateway's HTTP traffic in your own tests.

Installed with the package (entry point ``pytest11``); it needs ``vcrpy``
(``pip install "langchain-multigateway[testing]"``) only when a test uses it.

Use it by marking a test (or module) or by asking for the fixture::

    @pytest.mark.gateway_cassette
    def test_answer() -> None:
        llm = OpenAIChatModel(model="gpt-4o-mini")
        assert llm.invoke("2+2?").content

Cassettes live in ``<dir>/<test module>/<test name>.yaml`` where ``<dir>`` is
the ``gateway_cassette_dir`` ini option (relative to the rootdir) or a
``cassettes`` folder beside the test module. Record modes come from
``--gateway-record-mode`` or ``MULTIGATEWAY_RECORD_MODE``; the default, ``none``,
replays only and fails a test whose request has no recording, naming the
request. Before anything is written, the credential headers and query parameters
every registered provider declares (``authorization``, ``x-api-key``, ``api-key``,
``x-goog-api-key``, ``?key=``, ``?api-key=``, ... see ``register_provider``) are
replaced, cookies dropped, and bodies and URLs pass through the gateway's redaction
rule: the keys of every model built in the test process (``api_key=`` as well as
environment keys), URL userinfo and the values of ``*_API_KEY`` environment variables
are masked. In replay mode, unset ``OPENAI_API_KEY``,
``MISTRAL_API_KEY`` and ``ANTHROPIC_API_KEY`` get a placeholder for the test, so
recorded tests run with no key at all. Override ``gateway_vcr_config`` to pass more vcrpy
options (they are merged over the defaults).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from langchain_multigateway._redact import is_secret_header, redact
from langchain_multigateway.cassettes import normalised_body

__all__ = ["DEFAULT_FILTER_HEADERS", "RECORD_MODES", "REPLAY_PLACEHOLDER_KEYS", "filter_headers"]

RECORD_MODES = ("none", "once", "new_episodes", "all", "rewrite")
DEFAULT_FILTER_HEADERS: list[tuple[str, str | None]] = [
    ("openai-organization", "PLACEHOLDER"),
    ("openai-project", "PLACEHOLDER"),
    ("cookie", None),
]
"""Headers scrubbed besides the providers' credential headers (account ids, cookies)."""
_DROPPED_RESPONSE_HEADERS = {"set-cookie", "openai-organization"}
REPLAY_PLACEHOLDER_KEYS = ("OPENAI_API_KEY", "MISTRAL_API_KEY", "ANTHROPIC_API_KEY")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.\-\[\]]+")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("multigateway", "langchain-multigateway cassettes")
    group.addoption(
        "--gateway-record-mode",
        action="store",
        default=None,
        choices=RECORD_MODES,
        help="cassette record mode for gateway_cassette tests (default: none = replay only)",
    )
    parser.addini(
        "gateway_cassette_dir",
        "folder of gateway cassettes, relative to the rootdir (default: 'cassettes' beside each test module)",
        default="",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "gateway_cassette(name=None, **vcr_options): record/replay this test's HTTP traffic"
    )


def _record_mode(config: pytest.Config) -> str:
    mode = config.getoption("gateway_record_mode") or os.environ.get("MULTIGATEWAY_RECORD_MODE") or "none"
    if mode not in RECORD_MODES:
        msg = f"MULTIGATEWAY_RECORD_MODE={mode!r} is not a record mode; use one of {', '.join(RECORD_MODES)}"
        raise pytest.UsageError(msg)
    return mode


def _credential_names() -> tuple[tuple[str, ...], tuple[str, ...]]:
    # Imported here: the plugin loads with every pytest run, the registry only when a cassette is used.
    from langchain_multigateway.registry import credential_names

    return credential_names()


def filter_headers() -> list[tuple[str, str | None]]:
    """vcrpy ``filter_headers``: every provider's credential headers, then :data:`DEFAULT_FILTER_HEADERS`."""
    headers, _ = _credential_names()
    extra = {name for name, _ in DEFAULT_FILTER_HEADERS}
    return [(name, "PLACEHOLDER") for name in headers if name not in extra] + list(DEFAULT_FILTER_HEADERS)


def _scrub_text(text: str) -> str:
    # The redaction rule knows every key a model was built with (api_key= included);
    # environment keys are added for a test that sends one without building a model.
    text = redact(text)
    for name, value in os.environ.items():
        if name.endswith("_API_KEY") and len(value) >= 8:
            text = text.replace(value, "SCRUBBED")
    return text


def _scrub_bytes(raw: str | bytes) -> str | bytes:
    if isinstance(raw, bytes):
        return _scrub_text(raw.decode("utf-8", "replace")).encode()
    return _scrub_text(raw)


def _scrub_request(request: Any) -> Any:
    if request.body:
        request.body = _scrub_bytes(request.body)
    for name in list(request.headers):  # credential headers no provider declared (X-Auth-Key, Helicone-Auth)
        value = request.headers[name]
        if is_secret_header(name) or (isinstance(value, str) and _scrub_text(value) != value):
            request.headers[name] = "PLACEHOLDER"
    clean_uri = _scrub_text(request.uri)  # userinfo, credential query values vcrpy's filter missed
    if clean_uri != request.uri:
        request.uri = clean_uri
    return request


def _scrub_response(response: dict[str, Any]) -> dict[str, Any]:
    headers = response.get("headers") or {}
    credential_headers, _ = _credential_names()
    for name in [n for n in headers if n.lower() in _DROPPED_RESPONSE_HEADERS or n.lower() in credential_headers]:
        del headers[name]
    body = response.get("body") or {}
    if isinstance(body.get("string"), (str, bytes)):
        body["string"] = _scrub_bytes(body["string"])
    return response


def _json_body_matcher(r1: Any, r2: Any) -> None:
    assert normalised_body(r1.body) == normalised_body(r2.body), "request bodies differ"


def default_vcr_options(record_mode: str) -> dict[str, Any]:
    """The options every gateway cassette gets (before ``gateway_vcr_config``)."""
    _, query = _credential_names()
    return {
        "record_mode": record_mode,
        "filter_headers": filter_headers(),
        "filter_query_parameters": list(query),
        "before_record_request": _scrub_request,
        "before_record_response": _scrub_response,
        "decode_compressed_response": True,
        "match_on": ["method", "scheme", "host", "port", "path", "query", "gateway_json_body"],
        "allow_playback_repeats": True,
    }


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``; a user's record hooks run first, then the scrubbing ones."""
    merged = {**base, **extra}
    for hook in ("before_record_request", "before_record_response"):
        if hook in extra and hook in base and extra[hook] is not base[hook]:
            merged[hook] = _chain(extra[hook], base[hook])
    return merged


def _chain(first: Any, then: Any) -> Any:
    def run(value: Any) -> Any:
        value = first(value)
        return None if value is None else then(value)

    return run


@pytest.fixture
def gateway_vcr_config() -> dict[str, Any]:
    """Extra vcrpy options for gateway cassettes; override in your conftest."""
    return {}


@pytest.fixture
def gateway_cassette_dir(request: pytest.FixtureRequest) -> Path:
    """Folder of this test module's cassettes."""
    configured = request.config.getini("gateway_cassette_dir")
    module_path = Path(str(request.node.path))
    base = Path(request.config.rootpath) / configured if configured else module_path.parent / "cassettes"
    return base / module_path.stem


@pytest.fixture
def gateway_cassette(
    request: pytest.FixtureRequest, gateway_vcr_config: dict[str, Any], gateway_cassette_dir: Path
) -> Iterator[Any]:
    """Record or replay this test's HTTP traffic (a vcrpy cassette)."""
    try:
        import vcr
    except ImportError as exc:  # pragma: no cover - depends on the environment
        msg = 'gateway_cassette needs vcrpy: pip install "langchain-multigateway[testing]"'
        raise pytest.UsageError(msg) from exc
    mode = _record_mode(request.config)
    options = _merge(default_vcr_options(mode), gateway_vcr_config)
    marker = request.node.get_closest_marker("gateway_cassette")
    marker_options = dict(marker.kwargs) if marker else {}
    name = marker_options.pop("name", None) or _UNSAFE_NAME.sub("_", request.node.name)
    options = _merge(options, marker_options)
    recorder = vcr.VCR()
    recorder.register_matcher("gateway_json_body", _json_body_matcher)
    path = gateway_cassette_dir / f"{name}.yaml"
    with pytest.MonkeyPatch.context() as env, recorder.use_cassette(str(path), **options) as cassette:
        if mode == "none":
            # Replay needs no real key (headers are not matched), but the models still
            # refuse to build without one: give them a placeholder where none is set.
            for var in REPLAY_PLACEHOLDER_KEYS:
                if not os.environ.get(var):
                    env.setenv(var, "replay-placeholder-key")
        yield cassette


@pytest.fixture(autouse=True)
def _gateway_cassette_for_marked_tests(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("gateway_cassette") is not None:
        request.getfixturevalue("gateway_cassette")


def _missing_recording(error: BaseException | None) -> BaseException | None:
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if type(error).__name__ == "CannotOverwriteExistingCassetteException":
            return error
        error = error.__cause__ or error.__context__
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if not report.failed or call.excinfo is None:
        return
    miss = _missing_recording(call.excinfo.value)
    if miss is None:
        return
    failed = getattr(miss, "failed_request", None)
    cassette = getattr(miss, "cassette", None)
    what = f"{failed.method} {failed.uri}" if failed is not None else "a request"
    body = getattr(failed, "body", None) or b""
    preview = (body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body))[:300]
    where = getattr(cassette, "_path", "the cassette")
    report.longrepr = (
        f"No recording for {what} in {where}.\n"
        f"  request body: {preview}\n"
        "Record it against a live server with --gateway-record-mode=once (new cassettes) or =rewrite, "
        "or make the test send the request that was recorded.\n\n"
        f"{report.longrepr}"
    )
