"""The redaction rule (langchain_multigateway._redact) and where it is applied.

The end-to-end scan over every provider and channel is tests/unit/test_secrets_scan.py;
these pin the rule itself and the channels that scan reaches only indirectly.
"""

from __future__ import annotations

import io
import logging
import pickle
import time
import traceback

import pytest
from pydantic import SecretStr

from langchain_multigateway import _redact
from langchain_multigateway._redact import (
    MASK,
    redact,
    redact_fields,
    redact_label,
    redact_value,
    register_headers,
    register_model,
    register_query,
    register_secret,
    register_url,
    scrub_exception,
)
from langchain_multigateway.errors import AllDeploymentsFailedError, AttemptRecord, AuthenticationError
from langchain_multigateway.registry import credential_names, register_provider, unregister_provider
from langchain_multigateway.usage import Ledger
from langchain_multigateway.usage.records import CallRecord


def planted(name: str) -> str:
    return f"planted-{name}-" + "Zq8" * 6


# ---------------------------------------------------------------------- the rule
def test_registered_key_is_masked_wherever_it_appears() -> None:
    key = planted("direct")
    assert key in redact(f"Incorrect API key provided: {key}.")
    register_secret(SecretStr(key))
    assert redact(f"Incorrect API key provided: {key}.") == f"Incorrect API key provided: {MASK}."
    assert redact(f"{key}{key}") == MASK * 2


def test_many_keys_are_found_in_one_pass() -> None:
    keys = [planted(f"many-{i:03d}") for i in range(_redact._FEW_SECRETS + 8)]
    for key in keys:
        register_secret(key)
    assert len(_redact._VAULT.ordered) > _redact._FEW_SECRETS
    longer = keys[5] + "-rotated"
    register_secret(longer)
    text = f"{keys[0]}{keys[1]} then {longer}, {keys[5]}; tail {keys[-1]}"
    assert redact(text) == f"{MASK}{MASK} then {MASK}, {MASK}; tail {MASK}"
    assert redact("short") == "short"
    assert redact(f"no keys here, only {keys[3][:-1]}") == f"no keys here, only {keys[3][:-1]}"


def test_short_values_are_placeholders_and_never_registered() -> None:
    register_secret("none")
    register_secret("x" * 7)
    assert redact("none of the xxxxxxx here") == "none of the xxxxxxx here"


def test_a_key_inside_another_is_masked_whole() -> None:
    short, long = planted("inner"), planted("inner") + "-and-more"
    register_secret(short)
    register_secret(long)
    assert redact(f"[{long}]") == f"[{MASK}]"


def test_bearer_header_values_register_the_token_too() -> None:
    token = planted("bearer")
    register_headers({"Authorization": f"Bearer {token}", "x-trace": "trace-id-visible"})
    assert redact(f"token={token}") == f"token={MASK}"
    assert "trace-id-visible" in redact("trace-id-visible")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "GET https://h/v1/chat?api-version=1&api-key=abc123def456",
            "GET https://h/v1/chat?api-version=1&api-key=" + MASK,
        ),
        ("https://h/?key=AIzaSyA-shortish&alt=sse", f"https://h/?key={MASK}&alt=sse"),
        ("POST http://user:pa55word@10.0.0.1:8080/v1", f"POST http://{MASK}@10.0.0.1:8080/v1"),
        ("redis://:hunter2hunter2@cache:6379/0", f"redis://{MASK}@cache:6379/0"),
        ("sent Authorization: Bearer abc.def-ghi_jkl", f"sent Authorization: Bearer {MASK}"),
        ("mail me at someone@example.com about monkey=banana", "mail me at someone@example.com about monkey=banana"),
    ],
)
def test_structural_credentials_are_masked_without_registration(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_odd_inputs_register_nothing_and_long_labels_still_redact() -> None:
    before = _redact._VAULT.version
    for value in (None, 12345678, SecretStr(""), "   "):
        register_secret(value)
    register_url("not a url")
    register_url("http://[::1")  # unparseable
    assert _redact._VAULT.version == before
    token = planted("git-token")
    register_url(f"https://{token}@git.example.test/repo.git")  # a token as the whole userinfo
    assert redact(f"clone failed for {token}") == f"clone failed for {MASK}"
    long_label = "x" * 300 + token
    assert redact_label(long_label) == "x" * 300 + MASK


def test_url_and_query_registration() -> None:
    userinfo, query_key = planted("userinfo"), planted("query")
    register_url(f"https://gw:{userinfo}@example.test/v1?api-key={query_key}")
    register_query({"api-version": "2024-10-21-preview", "api-key": planted("query2")})
    # Registered values are masked even where no URL structure gives them away.
    assert redact(f"bad credentials {userinfo} / {query_key} / {planted('query2')}") == (
        f"bad credentials {MASK} / {MASK} / {MASK}"
    )
    assert "2024-10-21-preview" in redact("api-version 2024-10-21-preview")
    assert _redact.is_secret_query("access_token")
    assert not _redact.is_secret_query("max_tokens")


def test_provider_declared_names_join_the_rule_and_the_cassette_filters() -> None:
    register_provider("acme-test", "acme.chat:Chat", credential_headers=["X-Acme-Credential"], credential_query=["sig"])
    try:
        headers, query = credential_names()
        assert "x-acme-credential" in headers
        assert {"authorization", "x-api-key", "api-key", "x-goog-api-key"} <= set(headers)
        assert {"sig", "key", "api-key", "api_key"} <= set(query)
        assert redact("GET /blob?sv=1&sig=c2lnbmF0dXJlLXZhbHVl") == f"GET /blob?sv=1&sig={MASK}"
        assert redact_value({"X-Acme-Credential": "anything-at-all"}) == {"X-Acme-Credential": MASK}
    finally:
        unregister_provider("acme-test")


def test_redact_value_masks_credential_entries_but_not_token_counts() -> None:
    body = {
        "error": {"message": f"bad key {planted('body')}", "api_key": "whatever-was-sent"},
        "usage": {"total_tokens": 12, "token_type": "bpe"},
        "items": [f"Bearer {'a' * 20}", 3],
    }
    register_secret(planted("body"))
    clean = redact_value(body)
    assert clean["error"] == {"message": f"bad key {MASK}", "api_key": MASK}
    assert clean["usage"] == {"total_tokens": 12, "token_type": "bpe"}
    assert clean["items"] == [f"Bearer {MASK}", 3]


def test_label_cache_follows_new_registrations() -> None:
    key = planted("label")
    label = f"deployment-{key}"
    assert redact_label(label) == label
    register_secret(key)
    assert redact_label(label) == f"deployment-{MASK}"


def test_register_model_reads_every_credential_field() -> None:
    from langchain_multigateway import OpenAIChatModel

    keys = {n: planted(f"model-{n}") for n in ("api", "header", "query", "userinfo")}
    model = OpenAIChatModel(
        model="gemma",
        api_key=keys["api"],
        base_url=f"http://u:{keys['userinfo']}@127.0.0.1:9/v1",
        default_headers={"x-custom-token": keys["header"]},
        default_query={"api-key": keys["query"]},
        model_kwargs={"extra_body": {"user": "visible"}, "access_token": planted("model-kwargs")},
    )
    assert model.api_key is not None
    assert redact(planted("model-kwargs")) == MASK
    text = " ".join(keys.values())
    assert redact(text) == " ".join([MASK] * 4)
    # and every display of the model masks them
    for shown in (repr(model), str(model.model_dump()), model.model_dump_json()):
        assert not any(k in shown for k in keys.values())
    assert "127.0.0.1:9" in repr(model)


def test_register_model_accepts_any_pydantic_chat_model() -> None:
    from langchain_multigateway.testing import ScriptedChatModel

    class WithSecret(ScriptedChatModel):
        access: SecretStr | None = None

    key = planted("foreign-model")
    register_model(WithSecret(model="m", access=SecretStr(key)))
    assert redact(key) == MASK


# ---------------------------------------------------------------------- errors
def test_error_message_str_repr_pickle_and_later_edits_are_masked() -> None:
    key = planted("error")
    register_secret(key)
    error = AuthenticationError(
        f"Incorrect API key provided: {key}", provider="openai", status_code=401, body={"k": key}
    )
    error.message = f"{error.message} [server http://u:{key}@h]"
    for text in (str(error), repr(error), error.message, str(error.args), str(error.body)):
        assert key not in text
    assert key.encode() not in pickle.dumps(error)
    restored = pickle.loads(pickle.dumps(error))
    assert isinstance(restored, AuthenticationError)
    assert restored.status_code == 401


class _SdkError(Exception):
    def __init__(self, message: str, body: object) -> None:
        super().__init__(message)
        self.message = message
        self.body = body


def test_the_foreign_error_a_gateway_error_chains_is_scrubbed() -> None:
    key = planted("chained")
    register_secret(key)

    def translate() -> None:
        try:
            try:
                raise ConnectionError(f"proxy refused http://u:{key}@proxy")
            except ConnectionError as inner:
                raise _SdkError(f"401 {key}", {"error": {"message": key}}) from inner
        except _SdkError as exc:
            raise AuthenticationError(f"Incorrect API key provided: {key}") from exc

    with pytest.raises(AuthenticationError) as info:
        translate()
    text = "".join(traceback.format_exception(info.value))
    assert "401" in text
    assert "proxy refused" in text
    assert key not in text
    cause = info.value.__cause__
    assert isinstance(cause, _SdkError)
    assert key not in cause.message
    assert key not in str(cause.body)


def test_router_error_scrubs_foreign_attempt_errors() -> None:
    key = planted("attempt")
    register_secret(key)
    foreign = RuntimeError(f"third-party model says {key}")
    error = AllDeploymentsFailedError("all failed", [AttemptRecord("custom", foreign, 1.0)])
    assert key not in str(error)
    assert key.encode() not in pickle.dumps(error)
    assert key not in str(foreign)


def test_scrub_exception_survives_odd_exceptions() -> None:
    class FrozenError(Exception):
        def __setattr__(self, name: str, value: object) -> None:
            raise AttributeError("frozen")

    key = planted("odd")
    register_secret(key)
    try:
        try:
            raise ValueError(f"deepest {key}")
        except ValueError:
            raise FrozenError(f"frozen {key}")  # noqa: B904 - an implicit context, as SDKs leave them
    except FrozenError as frozen:
        outer = ValueError(f"outer {key}")
        outer.__cause__ = frozen
    outer.__notes__ = [f"note {key}"]
    scrub_exception(outer)
    assert key not in str(outer)
    assert key not in "".join(outer.__notes__)
    assert outer.__cause__ is not None
    assert key not in str(outer.__cause__.__context__)  # the chain goes on past a refusing exception


# ---------------------------------------------------------------------- logging
def _capture(logger_name: str, *args: object, exc: BaseException | None = None) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        logging.getLogger(logger_name).info(*args, exc_info=exc)  # type: ignore[arg-type]
    finally:
        root.removeHandler(handler)
        root.setLevel(old)
    return stream.getvalue()


def test_log_records_of_watched_loggers_are_redacted() -> None:
    _redact.install_log_redaction()
    key = planted("log")
    register_secret(key)
    line = _capture("httpcore2.http11", 'HTTP Request: %s %s "%s"', "POST", f"http://h/v1?api-key={key}", "401")
    assert line == f'httpcore2.http11 HTTP Request: POST http://h/v1?api-key={MASK} "401"\n'
    error = ValueError(f"echo {key}")
    logged = _capture("openai._base_client", "failed", exc=error)
    assert "failed" in logged
    assert "ValueError: echo" in logged
    assert key not in logged


def test_clean_records_keep_their_template_and_other_loggers_are_left_alone() -> None:
    _redact.install_log_redaction()
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    key = planted("other")
    register_secret(key)
    logger = logging.getLogger("langchain_multigateway.test")
    handler = Keep()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        logger.debug("calling %s", "gpt-4o-mini")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    assert records[0].msg == "calling %s"
    assert records[0].args == ("gpt-4o-mini",)
    assert key in _capture("someone.elses.app", "their own %s", key)
    # A broken format string is left for logging to report, not turned into our error.
    broken = logging.LogRecord("httpx", logging.INFO, __file__, 1, "%d items", ("three",), None)
    _redact._redact_record(broken)
    assert (broken.msg, broken.args) == ("%d items", ("three",))


# ---------------------------------------------------------------------- ledger rows
def test_ledger_rows_hold_no_credential() -> None:
    key = planted("ledger")
    register_secret(key)
    now = time.time()
    record = CallRecord(
        run_id="r1",
        started_at=now,
        ended_at=now,
        latency_ms=1.0,
        provider="openai",
        model=f"http://u:{key}@h/v1",
        deployment=f"dep-{key}",
        outcome="error",
        error_type="AuthenticationError",
        tags=(f"tag-{key}", "nightly"),
    )
    cleaned = redact_fields(record)
    assert cleaned.tags == (f"tag-{MASK}", "nightly")
    assert redact_fields(cleaned) is cleaned  # nothing left to change: the same row
    ledger = Ledger(":memory:")
    try:
        ledger.add(record)
        ledger.flush()
        rows = ledger.records()
    finally:
        ledger.close()
    assert rows
    assert key not in repr(rows)
    assert rows[0]["deployment"] == f"dep-{MASK}"


# ---------------------------------------------------------------------- a router over anyone's model
def test_router_over_a_third_party_model_masks_its_key() -> None:
    from langchain_core.callbacks import CallbackManagerForLLMRun
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage
    from langchain_core.outputs import ChatResult

    from langchain_multigateway.routing import Deployment, RoutingChatModel

    key = planted("third-party")

    class OtherPackageChat(BaseChatModel):
        """Stands for a chat model from another package: it never heard of the gateway."""

        secret: SecretStr

        @property
        def _llm_type(self) -> str:
            return "other-package"

        def _generate(
            self,
            messages: list[BaseMessage],
            stop: list[str] | None = None,
            run_manager: CallbackManagerForLLMRun | None = None,
            **kwargs: object,
        ) -> ChatResult:
            raise PermissionError(f"401 Incorrect API key provided: {self.secret.get_secret_value()}")

    router = RoutingChatModel(deployments=[Deployment(model=OtherPackageChat(secret=SecretStr(key)), name="other")])
    with pytest.raises(Exception) as info:
        router.invoke("hello")
    text = "".join(traceback.format_exception(info.value)) + repr(info.value)
    assert "Incorrect API key provided" in text
    assert key not in text
    assert key.encode() not in pickle.dumps(info.value)


def test_models_built_on_threads_while_others_redact() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from langchain_multigateway import OpenAIChatModel

    keys = [planted(f"thread-{i}") for i in range(64)]
    text = " | ".join(keys)

    def build(key: str) -> str:
        OpenAIChatModel(model="gemma", api_key=key, base_url="http://127.0.0.1:9/v1")
        return redact(f"401 for {key}")  # its own key is masked as soon as it is built

    def churn(_: int) -> str:
        return redact(text)  # redaction racing the registrations never fails

    with ThreadPoolExecutor(8) as pool:
        churning = [pool.submit(churn, i) for i in range(100)]
        building = [pool.submit(build, key) for key in keys]
        churning += [pool.submit(churn, i) for i in range(100)]
        built = [future.result() for future in building]
        churned = [future.result() for future in churning]
    assert all(line == f"401 for {MASK}" for line in built)
    assert all(isinstance(line, str) for line in churned)
    assert redact(text) == " | ".join([MASK] * len(keys))
