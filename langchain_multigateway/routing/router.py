"""RoutingChatModel: one chat model in front of many deployments."""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, Literal, Self

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput, ModelProfile
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult, Generation
from langchain_core.runnables import Runnable, RunnableConfig, ensure_config
from pydantic import ConfigDict, Field, PrivateAttr, field_validator, model_validator

from langchain_multigateway._ls_params import langsmith_params
from langchain_multigateway.cache.policy import GatewayCache
from langchain_multigateway.cache.routed import (
    akept,
    cached_stream_async,
    cached_stream_sync,
    kept,
    open_lookup,
    take_cache_args,
)
from langchain_multigateway.routing import attempt
from langchain_multigateway.routing.attempt import Shared
from langchain_multigateway.routing.deployment import Deployment, deployments_from
from langchain_multigateway.routing.eligibility import serves_model
from langchain_multigateway.routing.engine import Engine, drive_async, drive_sync
from langchain_multigateway.routing.gate import ConcurrencyGate
from langchain_multigateway.routing.health import DeploymentHealth, deployment_health
from langchain_multigateway.routing.policy import FailoverPolicy
from langchain_multigateway.routing.prepare import Preparations
from langchain_multigateway.routing.profile import shared_profile
from langchain_multigateway.routing.request import STREAM_RUN, from_configurable, read_overrides
from langchain_multigateway.routing.runs import AttemptRuns, StreamRun
from langchain_multigateway.routing.selection import structured_exclusion
from langchain_multigateway.routing.strategies import get_strategy, with_affinity
from langchain_multigateway.routing.stream import relay_async, relay_sync
from langchain_multigateway.routing.structured import (
    STRUCTURED_METHODS,
    StructuredMethod,
    StructuredOutputParser,
    StructuredSpec,
    output_format,
    with_raw,
)
from langchain_multigateway.state.base import BreakerListener, RouterState
from langchain_multigateway.state.memory import MemoryState
from langchain_multigateway.usage.budgets import Budget
from langchain_multigateway.usage.callbacks import accounting_only

__all__ = ["RoutingChatModel"]

RunManager = CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun


class RoutingChatModel(BaseChatModel):
    """A chat model that routes each call to one of several deployments, with failover.

    Each call: **filter** the deployments able to serve it (tools, structured-output
    method, images, context window against counted tokens, tags, open breakers,
    rpm/tpm budgets), **order** the rest by the strategy, **try** them (a transient
    error is retried on the same deployment within its ``RetryPolicy``, then the next
    one is tried), **record** latency, outcome and tokens in the shared state.

    Setup:
        Install ``langchain-multigateway``; each deployment's model needs its own
        credentials (e.g. ``OPENAI_API_KEY``).

    Key init args:
        deployments: list[Deployment | BaseChatModel]
            The models to route between (a bare model becomes a Deployment).
        strategy: str | Strategy
            ``ordered`` (default), ``round_robin``, ``weighted``, ``least_latency``,
            ``least_busy``, ``cheapest``, ``quality``, ``balanced``.
        failover: FailoverPolicy
            Error class → retry / next / raise (see ``routing.policy``).
        state: RouterState
            Breakers, rate windows, latency stats (``MemoryState()`` by default).
        max_wait: float
            Seconds a call may wait when every deployment is rate-limited or busy;
            after that it raises ``RateLimitError`` with ``retry_after``.
        budget: Budget | None
            A spending limit judged per deployment before it is sent anything: the
            call's prompt tokens (counted for that deployment's model) plus
            ``max_tokens``, at the deployment's ``input_price`` / ``output_price`` or
            the budget's price table. Real spend is recorded after each call. Give the
            budget to the router or to callbacks, not both.
        timeout: float | None
            Seconds the whole call may take, across retries, waits and deployments;
            the try in flight is cancelled when it expires (default None: no cap).
        stream_recovery: ``"error"`` | ``"continue"``
            What a stream cut after chunks reached the caller does (see the field).
        on_budget_exceeded: ``"raise"`` | ``"cheaper"``
            ``"raise"`` (default): ``BudgetExceededError`` before anything is sent.
            ``"cheaper"``: skip deployments the budget refuses and try the others,
            cheapest first; ``BudgetExceededError`` (``.estimates`` per deployment)
            only if none fits.

    Per call, through ``config={"metadata": {...}}`` (or ``configurable``) or kwargs:
    ``routing_strategy``, ``routing_tags`` (all must match), ``priority`` /
    ``routing_priority`` (lower is served first when a deployment is at
    ``max_concurrency``), ``stream_recovery``.

    Instantiate:
        .. code-block:: python

            from langchain_multigateway import OpenAIChatModel
            from langchain_multigateway.routing import Deployment, RoutingChatModel

            router = RoutingChatModel(
                deployments=[
                    Deployment(model=OpenAIChatModel(model="gpt-4o-mini"), name="primary", rpm=500),
                    Deployment(model=OpenAIChatModel(model="gemma", base_url="http://127.0.0.1:8088/v1",
                                                     api_key="none"), name="local", priority=1),
                ],
                strategy="ordered",
            )
            # or: RoutingChatModel.from_models(["openai:gpt-4o-mini", "mistral:mistral-small-latest"])

    Invoke:
        .. code-block:: python

            msg = router.invoke("Hello")
            msg.response_metadata
            # {"model_name": "gpt-4o-mini", "model_provider": "openai", "deployment": "primary",
            #  "provider": "openai", "model": "gpt-4o-mini", "attempts": 1, "latency_ms": 412.0, "cached": False}

    Stream:
        .. code-block:: python

            for chunk in router.stream("Tell me a joke"):
                print(chunk.content, end="")
            # failover happens before the first chunk reaches you; a failure after it ends the
            # stream in StreamInterruptedError (.delivered, .deployment, .cause), or with
            # stream_recovery="continue" resumes on a deployment with continue_prefix capability

    Async:
        .. code-block:: python

            await router.ainvoke("Hello")
            async for chunk in router.astream("Hello"):
                ...
            await router.abatch(["a", "b"], config={"max_concurrency": 8})

    Tool calling:
        .. code-block:: python

            router_with_tools = router.bind_tools([GetWeather], tool_choice="auto")
            router_with_tools.invoke("Weather in Paris?").tool_calls
            # each deployment converts the tools to its own API at call time

    Structured output:
        .. code-block:: python

            router.with_structured_output(Joke).invoke("A joke")                    # json_schema
            router.with_structured_output(Joke, method="function_calling", include_raw=True)
            # only deployments supporting the method are tried

    Token usage:
        .. code-block:: python

            router.invoke("Hello").usage_metadata   # the serving model's usage, passed through
            router.health()["primary"].remaining_tpm

            with track_usage() as usage:             # langchain_multigateway.usage
                router.invoke("Hello")
            usage.by_deployment()                    # failed attempts under their deployment

        When the call has callback handlers, each attempt is a child run of the
        router's run (``metadata={"deployment": name, "attempt": n}``), so usage
        trackers, the ledger and OpenTelemetry see failed attempts per deployment;
        the served call is counted once. Without handlers this costs nothing.

    Budgets:
        .. code-block:: python

            from langchain_multigateway.usage import Budget

            router = RoutingChatModel(deployments=[...], budget=Budget(max_cost_usd=5.0),
                                      on_budget_exceeded="cheaper", max_tokens=512)

    Breaker metrics:
        .. code-block:: python

            from langchain_multigateway.telemetry import PrometheusCallbackHandler

            metrics = PrometheusCallbackHandler(registry=REGISTRY)
            router.watch_breakers(metrics.set_breaker_state)   # gauge follows each breaker
            # (the same as router.state.add_listener(...), plus the current states now)
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True, protected_namespaces=())

    deployments: list[Deployment]
    strategy: Any = "ordered"
    """A strategy name or a ``Strategy`` instance."""
    affinity: bool | None = None
    """Prompt-cache affinity: keep each conversation (its ``session_id`` / ``thread_id`` in the run
    metadata, else its system prompt and first message) on one deployment, chosen by rendezvous
    hashing, so providers' prompt caches hit. None (default): on for the spreading strategies
    (round_robin, weighted, least_latency, least_busy, balanced), off for ordered, cheapest and
    quality, which already send every request to the same first choice."""
    failover: FailoverPolicy = Field(default_factory=FailoverPolicy)
    state: RouterState = Field(default_factory=MemoryState)
    learn_limits: bool = True
    """Read the rate limits providers announce in their response headers (``x-ratelimit-*``,
    ``anthropic-ratelimit-*``, ``Retry-After``) into :attr:`state`, and skip a deployment whose
    announced budget is spent until it resets, before it answers 429. Configured ``rpm``/``tpm``
    stay a ceiling. On by default: the provider's own figures are the real limit."""
    max_wait: float = Field(default=5.0, ge=0)
    model: str = Field(default="router", alias="model_name")
    """This router's name in traces (``ls_model_name``)."""
    temperature: float | None = None
    """Sent to every deployment when set."""
    max_tokens: int | None = None
    """Sent to every deployment when set; also sizes token estimates."""
    stop: list[str] | None = Field(default=None, alias="stop_sequences")
    timeout: float | None = None
    """Seconds one routed call may take in all, across retries, waits and deployments (None: no cap).

    When it expires the try in flight is cancelled (async) or was already bounded by
    it (sync: the time left is each try's request timeout, for the gateway's own
    providers), and the call raises ``GatewayTimeoutError`` (``limit="timeout"``)
    naming the deployment that was running and how long each try took. Each model's
    own ``timeout`` still bounds each of its requests."""
    max_retries: int | None = None
    """When set, caps tries per deployment at ``max_retries + 1``."""
    streaming: bool = False
    budget: Budget | None = None
    """Spending limit judged per deployment before each attempt (see the class doc)."""
    on_budget_exceeded: Literal["raise", "cheaper"] = "raise"
    """``"raise"``: stop before sending; ``"cheaper"``: try deployments that fit, cheapest first."""
    stream_recovery: Literal["error", "continue"] = "error"
    """What a stream that fails after chunks reached the caller does (per call: ``stream_recovery=``).

    ``"error"`` (default): it ends in ``StreamInterruptedError`` carrying the text delivered
    so far, the deployment and the cause; never a truncated answer presented as a success.
    ``"continue"``: the conversation plus the delivered text, as an assistant prefix, goes to
    the next deployment whose ``capabilities.continue_prefix`` is True, and the stream goes
    on with its continuation only (usage adds both attempts); with none able to, the
    ``StreamInterruptedError`` stands. A caller that is not streaming never sees a partial
    answer either way: a stream read underneath an ``invoke`` fails over until it is whole."""
    response_cache: GatewayCache | None = None
    """The router's own response cache (``langchain_multigateway.cache``), keyed on the request within
    the call's ``cache_scope``, never on the deployment; per call ``cache="off" | "read" | "write" |
    "readwrite"``. None (default): no response caching."""

    strict_params: bool = False
    """A call parameter a deployment's API does not take: ``False`` (default) drops it for that deployment
    (translating the common ones: ``max_tokens`` / ``max_completion_tokens``, ``reasoning_effort`` / Anthropic's
    ``thinking``) and lists it in ``response_metadata["dropped_params"]``; ``True`` refuses the call with
    ``UnsupportedParameterError`` naming the parameter and the deployment (see ``chat_models._params``)."""

    _engine: Engine = PrivateAttr()

    @field_validator("deployments", mode="before")
    @classmethod
    def _wrap_models(cls, value: Any) -> Any:
        if isinstance(value, Sequence):
            return [Deployment(model=v) if isinstance(v, BaseChatModel) else v for v in value]
        return value

    @model_validator(mode="after")
    def _setup(self) -> Self:
        if not self.deployments:
            msg = "RoutingChatModel needs at least one deployment"
            raise ValueError(msg)
        _unique_names(self.deployments)
        self.deployments = sorted(self.deployments, key=lambda d: d.priority)
        base: dict[str, Any] = {}
        if self.temperature is not None:
            base["temperature"] = self.temperature
        if self.max_tokens is not None:
            base["max_tokens"] = self.max_tokens
        gates = {d.name: ConcurrencyGate(d.max_concurrency) for d in self.deployments if d.max_concurrency}
        self._engine = Engine(
            self.deployments,
            Shared(self.state, gates, self.failover, learn_limits=self.learn_limits),
            strategy=with_affinity(get_strategy(self.strategy), self.affinity),
            base_kwargs=base,
            stop=self.stop,
            max_wait=self.max_wait,
            timeout=self.timeout,
            max_retries=self.max_retries,
            budget=self.budget,
            budget_mode=self.on_budget_exceeded,
            stream_recovery=self.stream_recovery,
        )
        self._engine.prepared = Preparations(strict_params=self.strict_params)
        return self

    def _resolve_model_profile(self) -> ModelProfile | None:
        """What every deployment shares (smallest context window, tool calling only if all can …)."""
        return shared_profile(self.deployments)

    # ------------------------------------------------------------------ identity
    @property
    def _llm_type(self) -> str:
        return "multigateway-router"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, "deployments": [d.name for d in self.deployments]}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        return langsmith_params(
            "multigateway",
            self.model,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            stop=stop or self.stop,
            call_kwargs=kwargs,
        )

    def deployment(self, name: str) -> Deployment:
        """The deployment called ``name``."""
        for dep in self.deployments:
            if dep.name == name:
                return dep
        raise KeyError(name)

    # ------------------------------------------------------------------ per-call overrides from config
    def invoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        return super().invoke(input, config, stop=stop, **from_configurable(config, kwargs))

    async def ainvoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        return await super().ainvoke(input, config, stop=stop, **from_configurable(config, kwargs))

    def stream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        config, kwargs = _with_stream_run(config, from_configurable(config, kwargs), is_async=False)
        return super().stream(input, config, stop=stop, **kwargs)

    def astream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        config, kwargs = _with_stream_run(config, from_configurable(config, kwargs), is_async=True)
        return super().astream(input, config, stop=stop, **kwargs)

    def _get_invocation_params(self, stop: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
        kwargs.pop(STREAM_RUN, None)  # the stream's run handle is no invocation parameter
        if type(self).asdict is not BaseChatModel.asdict or type(self).dict is not BaseChatModel.dict:
            return super()._get_invocation_params(stop=stop, **kwargs)
        # LangChain's own reaches the same dict through dict() inside a deprecation-silencing context, on every call.
        return {**self._identifying_params, "_type": self._llm_type, "stop": stop, **kwargs}

    def _get_llm_string(self, stop: list[str] | None = None, **kwargs: Any) -> str:
        kwargs.pop(STREAM_RUN, None)  # nor part of a cache key
        return super()._get_llm_string(stop=stop, **kwargs)

    # invoke() that streams underneath (``streaming=True``, astream_events) calls ``_stream``
    # without its run manager: hand it over, so attempts still become child runs.
    def _generate_with_cache(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if run_manager is not None and run_manager.handlers:
            kwargs[STREAM_RUN] = run_manager  # only _stream reads it; _generate drops it
        return super()._generate_with_cache(messages, stop, run_manager, **kwargs)

    def _should_stream(self, *, async_api: bool, run_manager: RunManager | None = None, **kwargs: Any) -> bool:
        # Skip LangChain's costly per-handler streaming question when only accounting handlers listen.
        if run_manager is not None and accounting_only(run_manager.handlers):
            run_manager = None
        return super()._should_stream(async_api=async_api, run_manager=run_manager, **kwargs)

    async def _agenerate_with_cache(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if run_manager is not None and run_manager.handlers:
            kwargs[STREAM_RUN] = run_manager  # only _stream reads it; _generate drops it
        return await super()._agenerate_with_cache(messages, stop, run_manager, **kwargs)

    # ------------------------------------------------------------------ tools & structured output
    def get_num_tokens_from_messages(self, messages: list[BaseMessage], tools: Sequence[Any] | None = None) -> int:
        """Prompt tokens as the first deployment counts them (what routing estimates with)."""
        return self.deployments[0].model.get_num_tokens_from_messages(messages, tools=tools)

    def get_num_tokens(self, text: str) -> int:
        """Tokens in ``text`` as the first deployment counts them."""
        return self.deployments[0].model.get_num_tokens(text)

    def bind_tools(
        self,
        tools: Sequence[Any],
        *,
        tool_choice: str | bool | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools; at call time each deployment's model binds them its own way.

        Args:
            tools: Anything the deployments' ``bind_tools`` accept (BaseTool,
                pydantic classes, functions, OpenAI-format dicts).
            tool_choice: Passed to each deployment's ``bind_tools``.
            **kwargs: Other ``bind_tools`` arguments (``parallel_tool_calls``, ``strict``).
        """
        fmt = kwargs.pop("ls_structured_output_format", None)
        _check_tool_choice(tool_choice, tools)
        tool_kwargs = dict(kwargs)
        if tool_choice is not None:
            tool_kwargs["tool_choice"] = tool_choice
        extra = {"ls_structured_output_format": fmt} if fmt else {}
        return self.bind(tools=list(tools), tool_kwargs=tool_kwargs, **extra)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type | None = None,
        *,
        method: StructuredMethod = "json_schema",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """Structured output, served only by deployments that support ``method``.

        Each deployment asks its own API for it (a JSON-schema response format, a
        forced tool call, JSON mode); the answer is parsed from a tool call or JSON text.
        """
        if kwargs:
            msg = f"Unexpected keyword arguments to with_structured_output: {sorted(kwargs)}"
            raise ValueError(msg)
        if method not in STRUCTURED_METHODS:
            msg = f"method must be one of {list(STRUCTURED_METHODS)}, not {method!r}"
            raise ValueError(msg)
        if schema is None and method != "json_mode":
            msg = f"schema is required for method={method!r}"
            raise ValueError(msg)
        spec = StructuredSpec(schema=schema, method=method, strict=strict)
        if all(structured_exclusion(d, spec) for d in self.deployments):
            msg = f"No deployment supports structured output by {method!r}"
            raise ValueError(msg)
        fmt = output_format(schema, method, strict)
        llm = self.bind(structured_output=spec, ls_structured_output_format=fmt)
        return with_raw(llm, StructuredOutputParser(target_schema=schema), include_raw)

    # ------------------------------------------------------------------ the call paths
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request, call, lookup = self._begin(messages, stop, run_manager, kwargs, streaming=False)
        hit = None if lookup is None else lookup.lookup()
        if hit is not None:
            return hit.result()  # type: ignore[no-any-return]
        answer = drive_sync(self._engine, request, call, attempt.invoke_sync)
        return kept(lookup, answer.finish(call.attempts))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request, call, lookup = self._begin(messages, stop, run_manager, kwargs, streaming=False)
        hit = None if lookup is None else await lookup.alookup()
        if hit is not None:
            return hit.result()  # type: ignore[no-any-return]
        answer = await drive_async(self._engine, request, call, attempt.invoke_async)
        return await akept(lookup, answer.finish(call.attempts))

    # The streams are returned, not wrapped in another generator: LangChain closes what
    # it was given when its consumer stops, and the relay's ``finally`` gives the slot back.
    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        request, call, lookup = self._begin(messages, stop, run_manager, kwargs, streaming=True)
        if lookup is None:
            return relay_sync(self._engine, request, call)
        return cached_stream_sync(lookup, lambda: relay_sync(self._engine, request, call))

    def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        request, call, lookup = self._begin(messages, stop, run_manager, kwargs, streaming=True)
        if lookup is None:
            return relay_async(self._engine, request, call)
        return cached_stream_async(lookup, lambda: relay_async(self._engine, request, call))

    def _begin(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        run_manager: RunManager | None,
        kwargs: dict[str, Any],
        *,
        streaming: bool,
    ) -> Any:
        """The call's request, state and cache lookup; child runs for its attempts when its run has handlers.

        ``_stream`` called without a ``StreamRun`` comes from an ``invoke`` that streams
        underneath: the caller is not streaming, so the stream is read whole before it is passed on.
        """
        marker = kwargs.pop(STREAM_RUN, None)
        whole = streaming and not isinstance(marker, StreamRun)
        if run_manager is None and isinstance(marker, (CallbackManagerForLLMRun, AsyncCallbackManagerForLLMRun)):
            run_manager = marker  # handed over by _generate_with_cache (invoke streaming underneath)
        if run_manager is None and isinstance(marker, StreamRun):
            metadata = marker.config.get("metadata")
            runs = AttemptRuns.of_stream(marker, self, is_async=marker.is_async)
        else:
            metadata = run_manager.metadata if run_manager is not None else None
            runs = AttemptRuns.of(run_manager)
        overrides = read_overrides(kwargs, metadata)
        cache_args = take_cache_args(kwargs, metadata)  # never sent to a provider, cache or not
        request, call = self._engine.begin(
            messages, stop, kwargs, overrides, streaming=streaming, whole=whole, runs=runs
        )
        return request, call, open_lookup(self.response_cache, request, cache_args, router=self.model)

    # ------------------------------------------------------------------ cache & health
    def _convert_cached_generations(self, cache_val: list[Generation]) -> list[ChatGeneration]:
        converted = super()._convert_cached_generations(cache_val)
        out = []
        for gen in converted:
            message = gen.message.model_copy(
                update={"response_metadata": {**gen.message.response_metadata, "cached": True}}
            )
            out.append(ChatGeneration(message=message, generation_info=gen.generation_info))
        return out

    def health(self, *, check_providers: bool = False) -> dict[str, DeploymentHealth]:
        """Per deployment: breaker, latency, error rate, load, remaining budgets
        (and the provider's own ``health_check()`` when ``check_providers``)."""
        gates = self._engine.shared.gates
        return {d.name: deployment_health(d, self.state, check_providers, gates.get(d.name)) for d in self.deployments}

    def watch_breakers(self, listener: BreakerListener) -> None:
        """Call ``listener(deployment, state)`` now for every deployment, then on each breaker change.

        ``state`` is ``"closed"``, ``"open"`` or ``"half_open"``; e.g.
        ``router.watch_breakers(prometheus_handler.set_breaker_state)``. Registered on
        :attr:`state` (``state.add_listener``), so routers sharing a state share listeners.
        """
        self.state.add_listener(listener)  # refuses a listener of the wrong shape first
        for dep in self.deployments:
            listener(dep.name, self.state.stats(dep.name).breaker.value)

    async def ahealth(self, *, check_providers: bool = False) -> dict[str, DeploymentHealth]:
        """Async twin of :meth:`health` (provider checks run concurrently)."""
        from langchain_multigateway.routing.health import adeployment_health

        gates = self._engine.shared.gates
        found = await asyncio.gather(
            *(adeployment_health(d, self.state, check_providers, gates.get(d.name)) for d in self.deployments)
        )
        return {h.name: h for h in found}

    # ------------------------------------------------------------------ builders
    @classmethod
    def from_models(cls, models: Sequence[str | BaseChatModel | Deployment], **kwargs: Any) -> RoutingChatModel:
        """A router over ``"provider:model"`` strings (via the registry), models or deployments."""
        return cls(deployments=deployments_from(models), **kwargs)


# LangChain asks inspect.signature() whether _generate takes a run_manager on every call (about
# 20 µs); a signature stored on the function is returned as it is instead of rebuilt each time.
for _method in (RoutingChatModel._generate, RoutingChatModel._agenerate):
    _method.__signature__ = inspect.signature(_method)  # type: ignore[union-attr]


def _with_stream_run(
    config: RunnableConfig | None, kwargs: dict[str, Any], *, is_async: bool
) -> tuple[RunnableConfig, dict[str, Any]]:
    """Fix the stream run's id and hand ``_stream`` its config (``stream()`` gives it no run manager)."""
    config = ensure_config(config)
    run_id = config.get("run_id")
    if run_id is None:
        run_id = config["run_id"] = uuid.uuid4()
    kwargs[STREAM_RUN] = StreamRun(config, run_id, is_async=is_async)
    return config, kwargs


def _unique_names(deployments: Sequence[Deployment]) -> None:
    """Refuse a name given twice (two deployments would share one breaker, gate and stats);
    number the unnamed twins (``openai:gpt-4o-mini#2``) around every name already taken."""
    if len({id(d) for d in deployments}) != len(deployments):
        listed = next(d.name for d in deployments if sum(x is d for x in deployments) > 1)
        msg = f"deployment {listed!r} is listed twice; make a second Deployment (with its own name=) for a twin"
        raise ValueError(msg)
    given = [d.name for d in deployments if d.named]
    for name in given:
        if given.count(name) > 1:
            msg = f"deployment name {name!r} is used twice; give each deployment its own name="
            raise ValueError(msg)
    served = {m for d in deployments for m in (d.model_name, f"{d.provider}:{d.model_name}")}
    for dep in deployments:
        # model= picks deployments by name or by model: a name that is another deployment's model would
        # send model="gpt-4.1" to a deployment serving something else. Refused here, once.
        if dep.named and dep.name in served and not serves_model(dep, dep.name, by_name=False):
            msg = (
                f"deployment name {dep.name!r} is the model another deployment serves, but this one serves "
                f"{dep.model_name!r}: invoke(model={dep.name!r}) would be ambiguous; give it another name="
            )
            raise ValueError(msg)
    taken = set(given)
    for dep in deployments:
        if dep.named:
            continue
        base, number, name = dep.name, 1, dep.name
        while name in taken:
            number += 1
            name = f"{base}#{number}"
        dep.name = name
        taken.add(name)


_TOOL_CHOICE_WORDS = ("auto", "none", "required", "any")


def _check_tool_choice(tool_choice: Any, tools: Sequence[Any]) -> None:
    """Refuse a tool_choice naming no bound tool now, not on every deployment at call time."""
    if not isinstance(tool_choice, str) or tool_choice in _TOOL_CHOICE_WORDS:
        return
    from langchain_core.utils.function_calling import convert_to_openai_tool

    names = [convert_to_openai_tool(t)["function"]["name"] for t in tools]
    if tool_choice not in names:
        msg = (
            f"tool_choice={tool_choice!r} names no bound tool; use one of {list(_TOOL_CHOICE_WORDS)} "
            f"or a tool name: {names}"
        )
        raise ValueError(msg)
