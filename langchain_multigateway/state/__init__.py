"""Routing state: circuit breakers, rate windows, latency stats, in-flight counts.

``MemoryState`` keeps them in this process (the default); ``RedisState`` shares them with
every process and host using the same Redis and namespace. ``state.settings`` builds either
from the config file's ``state:`` section; ``state.spend`` and its Redis / SQLite stores keep
budgets per period (``Budget(period="1d", store=...)``).
"""

from langchain_multigateway.state.base import Admission, BreakerState, DeploymentStats, RouterState, StateHealth
from langchain_multigateway.state.memory import MemoryState
from langchain_multigateway.state.redis import RedisState

__all__ = ["Admission", "BreakerState", "DeploymentStats", "MemoryState", "RedisState", "RouterState", "StateHealth"]
