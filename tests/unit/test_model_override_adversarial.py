"""invoke(model=...) under attack: a deployment named after another's model, an override that fails over,
and the router idle afterwards (scripted models: the routing, not a provider, is under test)."""

from __future__ import annotations

import pytest

from langchain_multigateway.errors import ProviderError
from langchain_multigateway.routing import Deployment, NoDeploymentAvailableError, RoutingChatModel
from langchain_multigateway.testing.scripted import ScriptedChatModel


def scripted(model: str, *steps: object) -> ScriptedChatModel:
    return ScriptedChatModel(model_name=model, steps=list(steps), exhausted="cycle")


def test_a_deployment_named_after_a_model_another_serves_is_refused_at_construction() -> None:
    """Before: model="gpt-4.1" was served by the deployment *named* gpt-4.1, whose model is gpt-4o-mini."""
    with pytest.raises(ValueError, match=r"deployment name 'gpt-4.1' is the model another deployment serves"):
        RoutingChatModel(
            deployments=[
                Deployment(model=scripted("gpt-4o-mini", "mini"), name="gpt-4.1"),
                Deployment(model=scripted("gpt-4.1", "big"), name="big", priority=1),
            ]
        )


def test_a_deployment_named_after_its_own_model_is_fine() -> None:
    router = RoutingChatModel(
        deployments=[
            Deployment(model=scripted("gpt-4.1", "one"), name="gpt-4.1"),
            Deployment(model=scripted("gpt-4.1", "two"), name="second", priority=1),
        ]
    )
    assert router.invoke("hi", model="gpt-4.1").response_metadata["deployment"] == "gpt-4.1"


def test_an_override_fails_over_among_the_deployments_serving_that_model_only() -> None:
    router = RoutingChatModel(
        deployments=[
            Deployment(model=scripted("gpt-4.1", ProviderError("boom", retryable=False)), name="a"),
            Deployment(model=scripted("gpt-4o-mini", "wrong model"), name="mini", priority=1),
            Deployment(model=scripted("gpt-4.1", "from b"), name="b", priority=2),
        ]
    )
    answer = router.invoke("hi", model="gpt-4.1")
    assert answer.content == "from b"
    assert [f["deployment"] for f in answer.response_metadata["failed_attempts"]] == ["a"]
    with pytest.raises(NoDeploymentAvailableError):
        router.invoke("hi", model="")  # an empty name serves nothing: refused, not the default route
    assert all(h.in_flight == 0 for h in router.health().values())
