"""Routing: one chat model in front of many deployments (filter, order, try, record)."""

from langchain_multigateway.routing.build import deployments_from, router_from_config, routers_from_config
from langchain_multigateway.routing.deployment import Capabilities, Deployment
from langchain_multigateway.routing.health import DeploymentHealth
from langchain_multigateway.routing.policy import (
    Action,
    Decision,
    FailoverPolicy,
    NoDeploymentAvailableError,
    RequestPreparationError,
)
from langchain_multigateway.routing.router import RoutingChatModel
from langchain_multigateway.routing.strategies import (
    STRATEGIES,
    BalancedStrategy,
    CheapestStrategy,
    LeastBusyStrategy,
    LeastLatencyStrategy,
    OrderedStrategy,
    QualityStrategy,
    RequestInfo,
    RoundRobinStrategy,
    Strategy,
    WeightedStrategy,
    get_strategy,
)

__all__ = [
    "STRATEGIES",
    "Action",
    "BalancedStrategy",
    "Capabilities",
    "CheapestStrategy",
    "Decision",
    "Deployment",
    "DeploymentHealth",
    "FailoverPolicy",
    "LeastBusyStrategy",
    "LeastLatencyStrategy",
    "NoDeploymentAvailableError",
    "RequestPreparationError",
    "OrderedStrategy",
    "QualityStrategy",
    "RequestInfo",
    "RoundRobinStrategy",
    "RoutingChatModel",
    "Strategy",
    "WeightedStrategy",
    "deployments_from",
    "get_strategy",
    "router_from_config",
    "routers_from_config",
]
