"""Who may do what on NATS, derived from the charter: each agent logs in with its own key, and may
pull only the topics the coordination contract lets it hear and publish on none of them.

NATS logs users in with NKEYs, which are Ed25519 keys; an agent's NKEY is its answerable key, so
there is no second secret to hand out or leak. The service has a key of its own
(``[nats] key``): it alone publishes on the system's subjects, after recording what it publishes.
An agent's rights are exactly what a durable pull consumer of its declared topics needs: to create
and read its own consumers, ask them for messages and acknowledge them. Anything else it tries,
publishing on a topic included, the server refuses before any subscriber sees it.

:func:`authorization` writes the ``authorization`` block of a nats-server configuration
(``answerable nats-config CONFIG``); include it where the server is configured.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable

import nkeys

from answerable.bus.nats import durable_name, stream_name, subject_of
from answerable.errors import ConfigError
from answerable.keys import KeyPair, public_key_problem
from answerable.records import SystemCharter

__all__ = ["authorization", "nkey_public", "nkey_seed"]


def nkey_seed(key: KeyPair) -> str:
    """The NKEY user seed of an answerable key (kept in memory; handed to nats-py to sign with)."""
    encoded: bytes = nkeys.encode_seed(key.private.private_bytes_raw(), nkeys.PREFIX_BYTE_USER)
    return encoded.decode()


def nkey_public(public_b64: str) -> str:
    """The NKEY user (``U...``) of a public key as the charter holds it."""
    raw = base64.b64decode(public_b64, validate=True)
    problem = public_key_problem(raw)
    if problem is not None:  # a charter written before such keys were refused may hold one
        raise ConfigError(f"the public key {public_b64[:12]}... {problem}: no NATS login is made for it")
    prefixed = bytes([nkeys.PREFIX_BYTE_USER]) + raw
    crc = nkeys.crc16(bytearray(prefixed))
    return base64.b32encode(prefixed + crc.to_bytes(2, "little")).decode().rstrip("=")


def agent_subjects(system: str, agent: str, topics: Iterable[str]) -> list[str]:
    """What an agent may publish: the JetStream API of its own consumers, and their acks."""
    stream = stream_name(system)
    allowed = ["$JS.API.INFO", f"$JS.API.STREAM.INFO.{stream}"]
    for topic in topics:
        durable = durable_name(agent, topic)
        allowed += [
            f"$JS.API.CONSUMER.INFO.{stream}.{durable}",
            f"$JS.API.CONSUMER.CREATE.{stream}.{durable}",
            f"$JS.API.CONSUMER.CREATE.{stream}.{durable}.>",
            f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{durable}",
            f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}",
            f"$JS.ACK.{stream}.{durable}.>",
        ]
    return allowed


def authorization(charter: SystemCharter, service_public_b64: str) -> str:
    """The ``authorization`` block: the service and every agent the contract lets hear a topic.

    Raises:
        ConfigError: the charter declares no coordination contract (there is then nothing to
            say which topics an agent may hear), or gives an agent that hears a topic no key.
    """
    contract = charter.coordination
    if contract is None:
        raise ConfigError(
            f"the charter of {charter.system!r} declares no coordination contract: NATS permissions "
            "are derived from it (which agent may hear which topic)"
        )
    stream = stream_name(charter.system)
    prefix = subject_of(charter.system, "x").rsplit(".", 1)[0]
    users = [
        {
            "nkey": nkey_public(service_public_b64),
            "permissions": {
                "publish": {
                    "allow": [f"{prefix}.>", "$JS.API.STREAM.>", "$JS.API.CONSUMER.>", "$JS.API.INFO"]
                },
                "subscribe": {"allow": ["_INBOX.>"]},
            },
        }
    ]
    hears: dict[str, list[str]] = {}
    for channel in contract.channels:
        for agent in channel.subscribers:
            hears.setdefault(agent, []).append(channel.topic)
    keys = {a.name: a.public_key for a in charter.agents}
    for agent, topics in sorted(hears.items()):
        public = keys.get(agent)
        if public is None:
            raise ConfigError(f"agent {agent!r} hears {', '.join(topics)} but the charter gives it no key")
        users.append(
            {
                "nkey": nkey_public(public),
                "permissions": {
                    "publish": {"allow": agent_subjects(charter.system, agent, topics)},
                    "subscribe": {"allow": ["_INBOX.>"]},
                },
            }
        )
    body = json.dumps({"users": users}, indent=2)
    return f"# answerable: NATS users of system {charter.system!r} (stream {stream})\nauthorization {body}\n"
