"""The coordination contract, checked: which agent may say what, on which topic, to whom.

The failure answerable exists for came from how agents coordinated, not from one bad call. So the
channels are the RI's to sign, like the rules: a message on a topic the charter does not declare,
from an agent not among its publishers, of a type it does not carry, to an agent not among its
subscribers, or with a payload its schema refuses, is refused before it is recorded or published.
The contract is checked once when a charter is made (a bad schema is the RI's error, found then)
and compiled once per charter for the checks on every message.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from answerable.errors import ConfigError
from answerable.records import Coordination

__all__ = ["ContractCheck", "Refused", "check_contract"]


def check_contract(contract: Coordination, agents: Iterable[str]) -> None:
    """Check a contract against the charter's agents before anyone signs it.

    Raises:
        ConfigError: naming the field: an unknown agent, a topic or type declared twice, a schema
            that is not valid JSON Schema or that refers outside itself.
    """
    known = set(agents)
    topics: set[str] = set()
    for n, channel in enumerate(contract.channels):
        where = f"coordination.channels.{n}"
        if channel.topic in topics:
            raise ConfigError(f"{where}.topic: {channel.topic!r} is declared twice; one channel per topic")
        topics.add(channel.topic)
        for role in ("publishers", "subscribers"):
            for name in getattr(channel, role):
                if name not in known:
                    raise ConfigError(
                        f"{where}.{role}: {name!r} is not an agent of this charter; "
                        f"its agents are {sorted(known)}"
                    )
        types: set[str] = set()
        for m, kind in enumerate(channel.messages):
            at = f"{where}.messages.{m}"
            if kind.type in types:
                raise ConfigError(f"{at}.type: {kind.type!r} is declared twice on topic {channel.topic!r}")
            types.add(kind.type)
            remote = _remote_ref(kind.payload_schema)
            if remote is not None:
                raise ConfigError(
                    f"{at}.payload_schema: $ref {remote!r} points outside the schema; only local "
                    "references (#/...) are allowed, so a check never fetches anything"
                )
            jsonschema = _jsonschema()
            try:
                jsonschema.Draft202012Validator.check_schema(kind.payload_schema)
            except jsonschema.SchemaError as exc:
                path = ".".join(str(p) for p in exc.absolute_path)
                raise ConfigError(
                    f"{at}.payload_schema{'.' + path if path else ''}: not valid JSON Schema: {exc.message}"
                ) from exc
            dangling = _dangling_ref(kind.payload_schema, kind.payload_schema)
            if dangling is not None:
                raise ConfigError(f"{at}.payload_schema: $ref {dangling!r} points at no schema in it")
            for probe in _PROBES:  # a schema that cannot judge these (a reference cycle) never will
                try:
                    jsonschema.Draft202012Validator(kind.payload_schema).is_valid(probe)
                except _cannot_judge() as exc:
                    raise ConfigError(
                        f"{at}.payload_schema: cannot judge a payload ({type(exc).__name__}): "
                        "a reference that leads back to itself?"
                    ) from exc


_REFS = ("$ref", "$dynamicRef")
_PROBES: tuple[object, ...] = ({}, {"a": [1, "b", None]}, [], "x", 0)


def _jsonschema() -> ModuleType:
    """jsonschema, imported when a contract is first checked: it costs a tenth of a second, and
    a command such as ``answerable halt`` never needs it."""
    import jsonschema

    return jsonschema


@functools.cache
def _cannot_judge() -> tuple[type[BaseException], ...]:
    """What a schema that got past the checks can still raise on a payload: refused, never raised."""
    import referencing.exceptions

    jsonschema = _jsonschema()
    return (
        jsonschema.exceptions.SchemaError,
        jsonschema.exceptions.UnknownType,
        referencing.exceptions.Unresolvable,
        RecursionError,
        TypeError,
        AttributeError,
    )


def _remote_ref(schema: object) -> str | None:
    """The first ``$ref`` or ``$dynamicRef`` that is not a JSON pointer into the schema itself
    (``#/...`` or ``#``), if any: anchors and URIs are refused, so nothing is ever resolved
    from outside and every reference can be checked here."""
    if isinstance(schema, dict):
        for key in _REFS:
            ref = schema.get(key)
            if isinstance(ref, str) and not (ref == "#" or ref.startswith("#/")):
                return ref
        for value in schema.values():
            found = _remote_ref(value)
            if found is not None:
                return found
    elif isinstance(schema, list):
        for value in schema:
            found = _remote_ref(value)
            if found is not None:
                return found
    return None


def _dangling_ref(schema: object, root: object) -> str | None:
    """The first local reference whose JSON pointer leads nowhere in ``root``, if any."""
    if isinstance(schema, dict):
        for key in _REFS:
            ref = schema.get(key)
            if isinstance(ref, str) and not _resolves(ref, root):
                return ref
        values: list[object] = list(schema.values())
    elif isinstance(schema, list):
        values = list(schema)
    else:
        return None
    for value in values:
        found = _dangling_ref(value, root)
        if found is not None:
            return found
    return None


def _resolves(ref: str, root: object) -> bool:
    node = root
    for raw in ref.removeprefix("#").split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return isinstance(node, dict | bool)  # a reference must reach a schema, not a keyword's value


@dataclass(frozen=True, slots=True)
class Refused:
    """Why a message is outside the contract: a stable code and the words for a person."""

    code: str
    """``undeclared_topic``, ``undeclared_sender``, ``undeclared_type``, ``undeclared_recipient``
    or ``payload_schema``."""
    detail: str


class ContractCheck:
    """One contract compiled for checking: a validator per (topic, type), built once."""

    def __init__(self, contract: Coordination) -> None:
        self.contract = contract
        self._channels = {c.topic: c for c in contract.channels}
        self._validators = {
            (c.topic, k.type): _jsonschema().Draft202012Validator(k.payload_schema)
            for c in contract.channels
            for k in c.messages
        }

    def declares(self, sender: str, topic: str, type: str) -> bool:
        """Whether the edge (sender, topic, type) is a channel of the contract."""
        channel = self._channels.get(topic)
        return channel is not None and sender in channel.publishers and (topic, type) in self._validators

    def decided(self, topic: str, type: str) -> bool:
        """Whether the rules decide messages of this type (the contract marks it ``decide``)."""
        channel = self._channels.get(topic)
        return channel is not None and any(k.type == type and k.decide for k in channel.messages)

    def subscribers(self, topic: str) -> tuple[str, ...]:
        channel = self._channels.get(topic)
        return channel.subscribers if channel is not None else ()

    def judge(
        self, sender: str, topic: str, type: str, payload: Mapping[str, Any], recipients: Sequence[str] = ()
    ) -> Refused | None:
        """None when the message is within the contract, else why it is not."""
        channel = self._channels.get(topic)
        if channel is None:
            return Refused("undeclared_topic", f"topic {topic!r} is not a channel of the contract")
        if sender not in channel.publishers:
            return Refused(
                "undeclared_sender",
                f"{sender} may not publish on {topic!r}; its publishers are {list(channel.publishers)}",
            )
        validator = self._validators.get((topic, type))
        if validator is None:
            return Refused(
                "undeclared_type",
                f"{topic!r} carries {[k.type for k in channel.messages]}, not {type!r}",
            )
        strangers = [r for r in recipients if r not in channel.subscribers]
        if strangers:
            return Refused(
                "undeclared_recipient",
                f"{strangers[0]} does not subscribe to {topic!r}; "
                f"its subscribers are {list(channel.subscribers)}",
            )
        try:
            error = _jsonschema().exceptions.best_match(validator.iter_errors(dict(payload)))
        except _cannot_judge() as exc:
            # A schema that got past check_contract and still cannot judge (a charter signed
            # elsewhere): the message is refused, never waved through, and never a traceback.
            return Refused("payload_schema", f"its schema cannot judge this payload: {exc}"[:480])
        if error is not None:
            path = ".".join(str(p) for p in error.absolute_path)
            return Refused("payload_schema", f"payload{'.' + path if path else ''}: {error.message}"[:480])
        return None
