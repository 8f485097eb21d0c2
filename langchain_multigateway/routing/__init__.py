"""Routing: one chat model in front of many deployments."""
