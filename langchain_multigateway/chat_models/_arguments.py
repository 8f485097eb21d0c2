"""Constructor arguments a provider model does not know: a near-miss is refused, the rest sent along.

LangChain's convention: an unknown keyword goes to ``model_kwargs`` (sent with every
request) with a warning. That convention also swallows typos: ``base_ur=`` would send the
prompt to the default hosted API and ``temprature=0`` would vanish into the request as a
field the API rejects or ignores. So a name one edit away from a real argument is refused
with a ConfigurationError naming the argument to use; anything else follows the convention,
its warning naming the closest argument when there is one.
"""

from __future__ import annotations

import difflib
import warnings
from typing import Any

from pydantic import AliasChoices, BaseModel

from langchain_multigateway.errors import ConfigurationError

__all__ = ["check_arguments", "known_arguments"]

_KNOWN: dict[type, frozenset[str]] = {}

# Unknown names that say "where to send": in the request body they are ignored, and the
# prompt goes to the default hosted API (api_base=, url=, endpoint=, host=).
_ADDRESS_WORDS = ("url", "uri", "endpoint", "host", "api_base")


def known_arguments(cls: type[BaseModel]) -> frozenset[str]:
    """Every field name and alias ``cls`` accepts."""
    found = _KNOWN.get(cls)
    if found is None:
        names: set[str] = set()
        for name, field in cls.model_fields.items():
            names.add(name)
            if field.alias:
                names.add(field.alias)
            choices = field.validation_alias
            if isinstance(choices, AliasChoices):
                names.update(c for c in choices.choices if isinstance(c, str))
            elif isinstance(choices, str):
                names.add(choices)
        found = _KNOWN[cls] = frozenset(names)
    return found


def _one_edit_apart(a: str, b: str) -> bool:
    """Whether one insertion, deletion, substitution or swap of neighbours turns ``a`` into ``b``."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diffs = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        if len(diffs) == 1:
            return True
        return (
            len(diffs) == 2 and diffs[1] == diffs[0] + 1 and a[diffs[0]] == b[diffs[1]] and a[diffs[1]] == b[diffs[0]]
        )
    shorter, longer = (a, b) if len(a) < len(b) else (b, a)
    return any(longer[:i] + longer[i + 1 :] == shorter for i in range(len(longer)))


def check_arguments(cls: type[BaseModel], values: Any) -> Any:
    """``values`` with unknown names moved into ``model_kwargs`` (or refused, see the module docstring)."""
    if not isinstance(values, dict):
        return values
    known = known_arguments(cls)
    unknown = [name for name in values if isinstance(name, str) and name not in known]
    if not unknown:
        return values
    for name in unknown:
        near = sorted(k for k in known if _one_edit_apart(name, k))
        if not near and any(word in name.lower() for word in _ADDRESS_WORDS):
            near = [n for n in ("base_url", "server_url") if n in cls.model_fields]
        if near:
            msg = f"{cls.__name__} has no argument {name!r}: did you mean {near[0]!r}?"
            if "model_kwargs" in cls.model_fields:
                msg += f" (to send {name!r} to the API as is, pass model_kwargs={{{name!r}: ...}})"
            raise ConfigurationError(msg, key_path=name)
    if "model_kwargs" not in cls.model_fields:
        names = ", ".join(repr(n) for n in unknown)
        msg = f"{cls.__name__} has no argument(s) {names}; see its docstring for the arguments it takes"
        raise ConfigurationError(msg, key_path=unknown[0])
    extra = dict(values.get("model_kwargs") or {})
    for name in unknown:
        closest = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {closest[0]!r}?)" if closest else ""
        warnings.warn(
            f"{name!r} is not an argument of {cls.__name__}{hint}: it is sent with every request "
            "as part of model_kwargs. Pass it in model_kwargs to say that is intended.",
            UserWarning,
            stacklevel=6,  # the caller that built the model
        )
        extra[name] = values.pop(name)
    return {**values, "model_kwargs": extra}
