"""``state:`` in the config file -> each router's RedisState; ``multigateway health`` reports it
(against a real redis-server on loopback, and a port where nothing listens)."""

from __future__ import annotations

from pathlib import Path

import pytest

from langchain_multigateway.cli import main
from langchain_multigateway.config import load_config
from langchain_multigateway.errors import ConfigurationError
from langchain_multigateway.routing import router_from_config
from langchain_multigateway.state import MemoryState
from langchain_multigateway.state.redis import RedisState
from langchain_multigateway.state.settings import check_state
from langchain_multigateway.state.spend_redis import RedisSpendStore
from tests.redis_server import RedisServer, free_port

pytest_plugins = ["tests.redis_fixtures"]  # redis_server
pytestmark = pytest.mark.redis

MODELS = {"models": {"a": {"provider": "scripted", "default_reply": "from a"}}}


def config_with(state: object, breaker: object = None, env: dict[str, str] | None = None) -> object:
    router: dict[str, object] = {"deployments": ["a"]}
    if breaker is not None:
        router["breaker"] = breaker
    return load_config(
        {**MODELS, "routers": {"main": router, "other": {"deployments": ["a"]}}, "state": state}, env=env
    )


def test_state_section_builds_a_redis_state_per_router(redis_server: RedisServer) -> None:
    url = f"redis://:pa55word@127.0.0.1:{redis_server.port}/0"
    config = load_config(
        {
            **MODELS,
            "routers": {
                "main": {"deployments": ["a"], "breaker": {"failure_threshold": 2}},
                "b": {"deployments": ["a"]},
            },
            "state": {"backend": "redis", "url": "${REDIS_URL}", "namespace": "shop", "timeout": 0.2},
        },
        env={"REDIS_URL": url},
    )
    assert "pa55word" not in repr(config)
    assert "pa55word" not in str(config.model_dump())
    main_router, other = router_from_config(config, "main"), router_from_config(config, "b")
    for router, name in ((main_router, "main"), (other, "b")):
        state = router.state
        assert isinstance(state, RedisState)
        assert (state.url, state.namespace, state.router, state.timeout) == (url, "shop", name, 0.2)
        assert "pa55word" not in repr(state)
    assert main_router.state.breaker.failure_threshold == 2
    assert main_router.invoke("hi").content == "from a"
    assert main_router.state.stats("a").successes == 1  # recorded in Redis (this server ignores the password)
    assert other.state.stats("a").successes == 0  # another router: keys of its own


def test_memory_backend_and_breaker_settings() -> None:
    config = load_config({**MODELS, "routers": {"main": {"deployments": ["a"], "breaker": {"cooldown": 2}}}})
    state = router_from_config(config, "main").state
    assert isinstance(state, MemoryState)
    assert state.breaker.cooldown == 2


@pytest.mark.parametrize(
    ("state", "breaker", "where", "said"),
    [
        ({"backend": "postgres"}, None, "state.backend", "expected one of: memory, redis"),
        ({"backend": "redis"}, None, "state.url", "expected a redis:// URL"),
        ({"backend": "redis", "url": "redis://x", "colour": 1}, None, "state.colour", "unknown key for backend redis"),
        ({"backend": "memory", "url": "redis://x"}, None, "state.url", "unknown key for backend memory"),
        ({"backend": "redis", "url": "redis://x", "namespace": ""}, None, "state.namespace", "non-empty string"),
        ({"backend": "redis", "url": "redis://x"}, {"failure_threshold": 0}, "routers.main.breaker", "at least 1"),
        ({"backend": "redis", "url": "redis://x"}, {"colour": 1}, "routers.main.breaker", "unknown setting"),
        ({"backend": "redis", "url": "redis://x"}, [1], "routers.main.breaker", "expected a mapping"),
        ({"backend": "redis", "url": "redis://x", "timeout": 0}, None, "state.state", "timeout"),
    ],
)
def test_state_mistakes_name_the_key(state: object, breaker: object, where: str, said: str) -> None:
    config = config_with(state, breaker)
    with pytest.raises(ConfigurationError) as info:
        router_from_config(config, "main")  # type: ignore[arg-type]
    assert where in str(info.value)
    assert said in str(info.value)


def test_state_section_must_be_a_mapping() -> None:
    with pytest.raises(ConfigurationError, match="state"):
        load_config({**MODELS, "state": "redis"})


def test_check_state_live_and_down(redis_server: RedisServer) -> None:
    live = check_state({"backend": "redis", "url": redis_server.url})
    assert (live.backend, live.live, live.shared) == ("redis", True, True)
    down = check_state({"backend": "redis", "url": f"redis://127.0.0.1:{free_port()}/0"})
    assert (down.live, down.shared) == (False, False)
    assert "ConnectionError" in (down.detail or "")
    assert check_state(None).backend == "memory"


def test_cli_health_shows_shared_state(
    redis_server: RedisServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "models:\n  a: {provider: scripted}\nrouters:\n  main: {deployments: [a]}\n"
    config = tmp_path / "gateway.yaml"
    config.write_text(text + f"state: {{backend: redis, url: '{redis_server.url}', namespace: cli}}\n")
    assert main(["health", "--config", str(config)]) == 0
    assert f"shared state: redis live ({redis_server.url})" in capsys.readouterr().out
    config.write_text(text + f"state: {{backend: redis, url: 'redis://u:s3cret@127.0.0.1:{free_port()}/0'}}\n")
    assert main(["health", "--config", str(config)]) == 3
    out = capsys.readouterr().out
    assert "shared state: redis DOWN (redis://u:***@127.0.0.1:" in out
    assert "s3cret" not in out
    assert "1 of 2 down" in out


def test_a_routers_budget_from_yaml_is_shared_through_the_state_redis(redis_server: RedisServer) -> None:
    budget_section = {"max_tokens": 40, "period": "1d", "model": "a-model", "on_exceeded": "cheaper"}
    models = {
        "a": {"provider": "scripted", "model": "a-model", "default_reply": "from a"},
        "b": {"provider": "scripted", "model": "b-model", "default_reply": "from b"},
    }
    namespace = f"yaml-{free_port()}"
    config = load_config(
        {
            "models": models,
            "routers": {"main": {"deployments": ["a", "b"], "budget": budget_section}},
            "state": {"backend": "redis", "url": redis_server.url, "namespace": namespace},
        }
    )
    one, two = router_from_config(config, "main"), router_from_config(config, "main")  # two processes
    assert one.on_budget_exceeded == "cheaper"
    budget = one.budget
    assert budget is not None
    assert (budget.name, budget.period, budget.model, budget.max_tokens) == ("main", "1d", "a-model", 40)
    assert isinstance(budget.store, RedisSpendStore)
    answers = [router.invoke("hello there") for router in (one, two, one, two)]
    # model a's tokens, spent through both routers, are one budget: once spent, b serves
    assert [answer.content for answer in answers] == ["from a", "from a", "from a", "from b"]
    spent_on_a = sum(answer.usage_metadata["total_tokens"] for answer in answers[:3])  # type: ignore[index]
    assert RedisSpendStore(redis_server.url, namespace=namespace).totals("main", "1d").spent_tokens == spent_on_a


@pytest.mark.parametrize(
    ("section", "where", "says"),
    [
        ({"max_cost": 5}, "routers.main.budget.max_cost", "unknown key"),
        ({"max_tokens": 5, "on_exceeded": "skip"}, "routers.main.budget.on_exceeded", "raise or cheaper"),
        ({"max_tokens": 5, "period": "weekly"}, "routers.main.budget", "period must be"),
        ({"period": "1d"}, "routers.main.budget", "needs max_cost_usd, max_tokens"),
        ("5 dollars", "routers.main.budget", "expected a mapping"),
    ],
)
def test_a_wrong_budget_section_says_where_and_what(section: object, where: str, says: str) -> None:
    config = load_config({**MODELS, "routers": {"main": {"deployments": ["a"], "budget": section}}})
    with pytest.raises(ConfigurationError, match=says) as caught:
        router_from_config(config, "main")
    assert where in str(caught.value)
