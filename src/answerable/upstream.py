"""The MCP servers whose tools the service governs: connected, listed, pinned, and called.

The gateway, not the proxy, holds the connections: a tool call is an operation like any other,
executed once, after its decision, with the lease and the halt checked where they always are,
and whatever credentials the upstream needs stay with the service. ``answerable mcp-proxy`` only
carries calls in and results out.

A tool is exposed only while it matches the pin the RI signed in the Cedar schema (see
:mod:`answerable.toolschema`). A server that says its tools changed (``tools/list_changed``) is
listed again at once; a tool whose pin no longer matches is withheld, and an intent decided
before the change is not executed after it. Each server has a task of its own that owns its
connection (the SDK's transports must be entered and left in one task) and reconnects after
the server process dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from answerable.config import McpConfig, McpServerConfig
from answerable.errors import ConfigError, ExecutionError, TransientError
from answerable.toolschema import args_from_schema, cedar_action, tool_pin

if TYPE_CHECKING:
    from mcp import Client

__all__ = ["Offer", "Upstream", "Upstreams"]


@dataclass(frozen=True, slots=True)
class Offer:
    """One tool an upstream server lists, and what answerable makes of it."""

    server: str
    tool: str
    description: str | None
    input_schema: Mapping[str, Any]
    pin: str
    unsupported: str | None
    """Why the rules cannot see this tool's arguments (a precise refusal), or None."""
    extra_context: Mapping[str, str] = field(default_factory=dict)
    """Context attributes answerable adds for this tool (``prerequisites``), with Cedar types."""

    @property
    def operation(self) -> str:
        return f"{self.server}.{self.tool}"

    def declaration(self) -> str:
        """The pinned Cedar action to paste into the schema (raises ToolSchemaUnsupported)."""
        return cedar_action(
            self.operation, self.tool, self.description, self.input_schema, extra_context=self.extra_context
        )


class Upstream:
    """One MCP server, kept connected by a task of its own."""

    def __init__(
        self,
        config: McpServerConfig,
        on_change: Callable[[], Awaitable[None]],
        extra_context: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.config = config
        self.extra_context = dict(extra_context or {})
        self.offers: dict[str, Offer] = {}
        self._on_change = on_change
        self._client: Client | None = None
        self._ready = asyncio.Event()
        self._up = asyncio.Event()
        """Set while connected: what a call waiting for a server being started again waits on."""
        self._lost = asyncio.Event()
        self._changed = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.error: str | None = None
        self._started = False
        """Connected once: from then on each lost connection is said as it happens; before, the
        failure is :meth:`start`'s error, said once by whoever started it."""

    async def start(self, within: float) -> None:
        """Connect and list; a server that cannot be reached ``within`` seconds is a ConfigError."""
        self._task = asyncio.create_task(self._run(), name=f"mcp upstream {self.config.name}")
        try:
            await asyncio.wait_for(self._ready.wait(), within)
        except TimeoutError:
            self.error = f"no answer in {within:g} s"
        if self._client is None:
            await self.stop()
            raise ConfigError(f"[mcp.servers.{self.config.name}]: cannot connect: {self.error}")
        self._started = True

    async def _run(self) -> None:
        from mcp import Client, StdioServerParameters
        from mcp.types import ToolListChangedNotification

        async def heard(message: Any) -> None:
            if isinstance(message, ToolListChangedNotification):
                self._changed.set()

        config = self.config
        target: Any = config.url
        if config.command:
            passed = {name: os.environ[name] for name in config.env if name in os.environ}
            target = StdioServerParameters(
                command=config.command[0],
                args=list(config.command[1:]),
                cwd=str(config.cwd),
                env=passed or None,
            )
        delay = 0.2
        while not self._stop.is_set():
            self._lost.clear()
            try:
                async with Client(target, cache=None, message_handler=heard, mode="legacy") as client:
                    self.offers = await _listed(config.name, client, self.extra_context)
                    self._client, self.error, delay = client, None, 0.2
                    self._ready.set()
                    self._up.set()
                    await self._changes()
                    while not (self._stop.is_set() or self._lost.is_set()):
                        await _first(self._stop.wait(), self._lost.wait(), self._changed.wait())
                        if self._changed.is_set():
                            self._changed.clear()
                            self.offers = await _listed(config.name, client, self.extra_context)
                            await self._changes()
            except Exception as exc:  # the server's process died or answered nonsense: reconnect
                self.error = _reason(exc)
                if self._started:
                    print(f"answerable: mcp server {config.name}: {self.error}", file=sys.stderr, flush=True)
            finally:
                self._client, self.offers = None, {}  # nothing is offered while it is away
                self._up.clear()
            self._ready.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            delay = min(delay * 2, 5.0)

    async def _changes(self) -> None:
        """Tell the owner the offers changed; its failure is its own, not a lost connection."""
        try:
            await self._on_change()
        except Exception as exc:
            print(f"answerable: mcp server {self.config.name}: {_reason(exc)}", file=sys.stderr, flush=True)

    async def call(self, tool: str, arguments: Mapping[str, Any], within: float) -> dict[str, Any]:
        """Call ``tool``; its result as JSON (``content``, ``structuredContent``).

        Raises:
            ExecutionError: the tool said it failed (``isError``), or the server is not connected
                (nothing was sent).
            TransientError: the call was sent and no valid answer came back (the server hung,
                died or answered malformed): whether it acted is unknown.
        """
        client = self._client
        if client is None:
            raise ExecutionError(f"mcp server {self.config.name} is not connected: {self.error}")
        try:
            result = await asyncio.wait_for(client.call_tool(tool, dict(arguments)), within)
        except TimeoutError as exc:
            raise TransientError(
                f"mcp server {self.config.name}: {tool} did not answer in {within:g} s"
            ) from exc
        except Exception as exc:  # the SDK raises its own and pydantic's errors on a bad answer
            if not isinstance(exc, RuntimeError | ValueError):  # not a result it refused: the link
                self._lost.set()
            raise TransientError(
                f"mcp server {self.config.name}: {tool}: no valid answer: {_reason(exc)}"
            ) from exc
        doc: dict[str, Any] = result.model_dump(mode="json", by_alias=True, exclude_none=True)
        doc.pop("_meta", None)
        doc.pop("resultType", None)
        if result.is_error:
            text = " ".join(str(c.get("text", "")) for c in doc.get("content", []) if isinstance(c, dict))
            raise ExecutionError(f"{self.config.name}.{tool} failed: {text[:300]}")
        return doc

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def connected_within(self, seconds: float) -> bool:
        """Whether it is connected, waiting up to ``seconds`` for a reconnection under way."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._up.wait(), seconds)
        return self.connected

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 10)
            if not self._task.done():
                self._task.cancel()


def _reason(exc: BaseException) -> str:
    """One line for what went wrong, from inside the task groups the SDK wraps errors in."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}".replace("\n", " ")[:300]


async def _first(*waits: Awaitable[Any]) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


async def _listed(
    server: str, client: Client, extra_context: Mapping[str, Mapping[str, str]]
) -> dict[str, Offer]:
    offers: dict[str, Offer] = {}
    cursor: str | None = None
    while True:
        page = await client.list_tools(cursor=cursor)
        for tool in page.tools:
            schema = dict(tool.input_schema)
            operation = f"{server}.{tool.name}"
            extra = extra_context.get(operation, {})
            unsupported = None
            try:
                cedar_action(operation, tool.name, tool.description, schema, extra_context=extra)
                args_from_schema(operation, schema)  # a schema jsonschema refuses cannot check calls
            except ConfigError as exc:
                unsupported = str(exc)
            pin = tool_pin(tool.name, tool.description, schema)
            offer = Offer(server, tool.name, tool.description, schema, pin, unsupported, extra)
            offers[offer.operation] = offer
        cursor = page.next_cursor
        if cursor is None:
            return offers


class Upstreams:
    """Every ``[mcp.servers.*]`` of a config, and which of their tools the signed rules let out."""

    def __init__(
        self,
        config: McpConfig,
        pins: Mapping[str, str],
        on_change: Callable[[], Awaitable[None]],
        extra_context: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.config = config
        self.pins = dict(pins)
        """Action -> the pin the RI signed (``@mcp_tool``), from the ruleset in force."""
        self.servers = {s.name: Upstream(s, on_change, extra_context) for s in config.servers}
        self._refused: dict[str, str] = {}
        """Tool -> why the service could not take it (its schema failed when registered)."""

    def refuse(self, operation: str, why: str) -> None:
        """Withhold ``operation`` until restart: the service could not register it."""
        self._refused[operation] = why

    async def start(self) -> None:
        import logging

        # The SDK logs a server's malformed output with whole tracebacks; each failure is said
        # here in one line instead (and recorded, for a call).
        logging.getLogger("mcp").setLevel(logging.CRITICAL)
        for server in self.servers.values():
            await server.start(self.config.connect_timeout)

    async def stop(self) -> None:
        for server in self.servers.values():
            await server.stop()

    def offers(self) -> dict[str, Offer]:
        return {op: offer for server in self.servers.values() for op, offer in server.offers.items()}

    async def awaiting(self, operation: str) -> None:
        """Let a call to a server that is being started again (it died) wait for it, up to
        ``connect_timeout_seconds``, instead of being refused in the moment it is away."""
        server = self.servers.get(operation.split(".", 1)[0])
        if server is not None and not server.connected:
            await server.connected_within(self.config.connect_timeout)

    def standing(self, operation: str) -> str | None:
        """Why ``operation`` is withheld now, or None when it is exposed."""
        offer = self.offers().get(operation)
        signed = self.pins.get(operation)
        if offer is None:
            server = self.servers.get(operation.split(".", 1)[0])
            if server is not None and not server.connected:
                return f"mcp server {server.config.name} is not connected"
            return f"no upstream server lists {operation} now"
        if offer.unsupported is not None:
            return offer.unsupported
        if operation in self._refused:
            return self._refused[operation]
        if signed is None:
            return (
                f"the signed rules do not declare {operation} (answerable mcp-schema prints its declaration)"
            )
        if signed != offer.pin:
            return (
                f"{operation} changed upstream since the RI signed it (pin {signed[:12]}, "
                f"now {offer.pin[:12]}): withheld until the RI signs the new declaration"
            )
        return None

    async def call(self, operation: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Call an exposed tool (the operation the gateway registered for it).

        Raises:
            ExecutionError: it is withheld now, or it failed; TransientError: see Upstream.call.
        """
        why = self.standing(operation)
        if why is not None:
            raise ExecutionError(f"not called: {why}")
        offer = self.offers()[operation]
        return await self.servers[offer.server].call(offer.tool, arguments, self.config.call_timeout)
