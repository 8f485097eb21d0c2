"""Shared routing state: circuit breakers, rate windows, latency stats, in-flight counts."""

from langchain_multigateway.state.base import Admission, BreakerState, DeploymentStats, RouterState, StateHealth
from langchain_multigateway.state.memory import MemoryState
from langchain_multigateway.state.redis import RedisState

__all__ = ["Admission", "BreakerState", "DeploymentStats", "MemoryState", "RedisState", "RouterState", "StateHealth"]
