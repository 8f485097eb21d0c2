"""invoke(model=...) on the router: the deployment serving that model answers, or the call is refused clearly.

LangChain's own standard override tests (``ChatModelIntegrationTests.test_*_with_model_override``)
run against the router here, its deployments real OpenAIChatModel instances on a loopback
server that answers with the model it was asked for, as hosted APIs do.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_tests.integration_tests import ChatModelIntegrationTests

from langchain_multigateway.chat_models.openai import OpenAIChatModel
from langchain_multigateway.routing import Deployment, NoDeploymentAvailableError, RoutingChatModel
from tests.loopback import Reply, Script, _handler, chat_completion, chat_stream


class EchoModelScript(Script):
    """Answers as the model the request named (JSON or SSE, as asked)."""

    def next_reply(self) -> Reply:
        with self.lock:
            body = self.requests[-1]["body"]
        model = body["model"]
        if body.get("stream"):
            return Reply(sse=chat_stream(["Hi", " there"], model=model))
        return Reply(body=chat_completion("Hi there", model=model))


@pytest.fixture(scope="module")
def echo() -> Iterator[tuple[str, EchoModelScript]]:
    script = EchoModelScript([])
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", script
    finally:
        server.shutdown()
        server.server_close()


def router_over(url: str) -> RoutingChatModel:
    return RoutingChatModel(
        deployments=[
            Deployment(model=OpenAIChatModel(model="gpt-4o-mini", base_url=url, api_key="k"), name="cheap"),
            Deployment(model=OpenAIChatModel(model="gpt-4.1", base_url=url, api_key="k"), name="strong", priority=1),
        ]
    )


class TestRouterModelOverride:
    """LangChain's standard override tests, unchanged, with the router as the model."""

    supports_model_override = True
    model_override_value = "gpt-4.1"

    @pytest.fixture
    def model(self, echo: tuple[str, Script]) -> BaseChatModel:
        return router_over(echo[0])

    test_invoke_with_model_override = ChatModelIntegrationTests.test_invoke_with_model_override
    test_ainvoke_with_model_override = ChatModelIntegrationTests.test_ainvoke_with_model_override
    test_stream_with_model_override = ChatModelIntegrationTests.test_stream_with_model_override
    test_astream_with_model_override = ChatModelIntegrationTests.test_astream_with_model_override


def test_the_override_picks_the_deployment_and_sends_its_own_model(echo: tuple[str, Script]) -> None:
    url, script = echo
    script.requests.clear()
    router = router_over(url)
    by_name = router.invoke("hi", model="strong")  # a deployment's name
    assert by_name.response_metadata["deployment"] == "strong"
    assert script.requests[-1]["body"]["model"] == "gpt-4.1"  # never the deployment's name
    by_provider = router.invoke("hi", model="openai:gpt-4o-mini")
    assert by_provider.response_metadata["deployment"] == "cheap"
    assert router.invoke("hi").response_metadata["deployment"] == "cheap"  # no override: the usual order


def test_an_override_no_deployment_serves_is_refused_naming_what_each_serves(echo: tuple[str, Script]) -> None:
    url, script = echo
    script.requests.clear()
    with pytest.raises(NoDeploymentAvailableError) as info:
        router_over(url).invoke("hi", model="claude-opus-4")
    assert info.value.excluded == {
        "cheap": "serves 'gpt-4o-mini', not the model='claude-opus-4' the call asked for",
        "strong": "serves 'gpt-4.1', not the model='claude-opus-4' the call asked for",
    }
    assert script.requests == []


def test_a_bound_override_and_tracing_name_it(echo: tuple[str, Script]) -> None:
    router = router_over(echo[0])
    assert router.bind(model="gpt-4.1").invoke("hi").response_metadata["model_name"] == "gpt-4.1"
    assert router._get_ls_params(model="gpt-4.1")["ls_model_name"] == "gpt-4.1"
