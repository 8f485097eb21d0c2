"""The gateway as an HTTP server: OpenAI- and Anthropic-compatible, with virtual keys, budgets and metrics.

Setup:
    ``pip install 'langchain-multigateway[server]'`` (Starlette, uvicorn, orjson,
    prometheus-client).

Run:
    .. code-block:: bash

        export MULTIGATEWAY_MASTER_KEY=$(openssl rand -hex 24)
        multigateway keys create --name team-a --models main --rpm 60 --budget 10 --period 30d
        multigateway serve --config gateway.yaml --port 4000

Call it with any OpenAI or Anthropic client:
    .. code-block:: python

        from openai import OpenAI

        client = OpenAI(base_url="http://127.0.0.1:4000/v1", api_key="mg-...")
        client.chat.completions.create(model="main", messages=[{"role": "user", "content": "Hi"}])

Endpoints: ``POST /v1/chat/completions``, ``POST /v1/messages``, ``GET /v1/models``,
``GET /health/liveness``, ``GET /health/readiness``, ``GET /metrics``, and
``/admin/keys`` for the master key. Build the app in code with :func:`build_app`
or :func:`create_app`.
"""

from langchain_multigateway.server.app import ServerSettings, create_app
from langchain_multigateway.server.gateway import Gateway
from langchain_multigateway.server.keys import KeyStore, VirtualKey
from langchain_multigateway.server.runtime import app_from_env, build_app

__all__ = ["Gateway", "KeyStore", "ServerSettings", "VirtualKey", "app_from_env", "build_app", "create_app"]
