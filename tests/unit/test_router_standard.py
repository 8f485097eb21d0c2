"""LangChain's standard unit tests for RoutingChatModel."""

from __future__ import annotations

from typing import Any

from langchain_tests.unit_tests import ChatModelUnitTests

from langchain_multigateway.routing import Deployment, RoutingChatModel
from langchain_multigateway.testing import ScriptedChatModel


class TestRoutingChatModelUnit(ChatModelUnitTests):
    # Not lc-serializable (it holds live models and state), so test_serdes skips itself.
    @property
    def chat_model_class(self) -> type[RoutingChatModel]:
        return RoutingChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {
            "model": "router",
            "deployments": [
                Deployment(model=ScriptedChatModel(model="a"), name="a"),
                Deployment(model=ScriptedChatModel(model="b"), name="b", priority=1),
            ],
        }

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def supports_image_inputs(self) -> bool:
        return True
