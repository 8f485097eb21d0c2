"""Test and demo helpers: models that say in their names that they are not providers."""

from langchain_multigateway.testing.scripted import ScriptedCall, ScriptedChatModel, Step

__all__ = ["ScriptedCall", "ScriptedChatModel", "Step"]
