"""LangChain's standard unit tests for ScriptedChatModel."""

from __future__ import annotations

from typing import Any

from langchain_tests.unit_tests import ChatModelUnitTests

from langchain_multigateway.testing import ScriptedChatModel


class TestScriptedChatModelUnit(ChatModelUnitTests):
    # ScriptedChatModel is not lc-serializable (its script may hold exceptions and
    # messages), so the standard test_serdes skips itself honestly.
    @property
    def chat_model_class(self) -> type[ScriptedChatModel]:
        return ScriptedChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": "scripted-model", "steps": ["hello"]}

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def supports_image_inputs(self) -> bool:
        return True
