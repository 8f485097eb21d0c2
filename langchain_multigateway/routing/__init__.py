"""Routing: one chat model in front of many deployments (filter, order, try, record).

A call visits these modules in this order, each once, going down and coming back up:

1. ``router``     RoutingChatModel: the LangChain surface; turns a call into a request and hands it on.
2. ``request``    the immutable description of the call (messages, overrides, token counts); refuses bad input.
3. ``engine``     the failover loop, once, as steps (try, sleep, wait for a gate); a sync and an async driver.
4. ``selection``  which deployments may serve the request (the filter) and in what order (``strategies``).
5. ``prepare``    the request in one deployment's terms (tools, structured output bound its own way).
6. ``attempt``    one try at one deployment: take a slot (admission, gate, budget) ... release it, once.
7. ``stream``     for streams: fail over until the first chunk, then relay the rest (with the router's metadata).

Beside them: ``deployment`` (a model and its routing facts), ``policy`` (error -> retry / next / raise),
``gate`` (max_concurrency with a priority line), ``budget`` (a router budget's per-call guard), ``runs``
(child runs so callbacks see each try), ``health``, ``structured`` (parsing structured output) and
``build`` (routers from config).
"""

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
