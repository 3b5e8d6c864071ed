"""``answerable mcp-proxy CONFIG``: an MCP server in front of the governed tools, for MCP clients.

It is a client of ``answerable serve``, never a second gateway: it lists the tools the service
exposes (each one the RI signed, see :mod:`answerable.upstream`) and turns each ``tools/call``
into an intent, signed with the key of the charter agent it acts as. The service decides it,
sends it to review when the rules say so, executes it once and records it; the proxy carries the
result back with its receipt (:mod:`answerable.receipt`) in the result's ``_meta``:

    "_meta": {"answerable/intent": "...", "answerable/status": "succeeded",
              "answerable/receipt": {...}}            # or "answerable/receipt_url" (handle mode)

A call that waits for a review is held open (``pending = "hold"``, up to ``hold_seconds``) or
answered at once as pending (``pending = "answer"``). Either way only a reviewer's signed answer
releases it: the proxy asks its client nothing (an MCP elicitation reaches the requester, who
is not the one answerable asks), and no argument or flag of the call can approve it.
"""

from __future__ import annotations

import time
from typing import Any

from answerable.client import AsyncClient, ServiceRefused
from answerable.config import McpConfig, ServiceConfig
from answerable.errors import ArgumentsInvalid, ConfigError, RecordInvalid
from answerable.keys import KeyPair

__all__ = ["McpProxy", "service_url"]


def service_url(config: ServiceConfig) -> str:
    mcp = config.mcp
    if mcp is not None and mcp.service:
        return mcp.service
    if config.public_url:
        return config.public_url
    scheme = "https" if config.tls_cert else "http"
    return f"{scheme}://{config.host}:{config.port}"


class McpProxy:
    """The MCP server side of the proxy: tools/list and tools/call over the service's API."""

    def __init__(self, config: ServiceConfig, *, url: str | None = None) -> None:
        """Raises: ConfigError: the config has no ``[mcp]`` table with ``agent`` and ``key``."""
        mcp = config.mcp
        if mcp is None or mcp.agent is None or mcp.key is None:
            raise ConfigError(
                f"{config.source.name}: [mcp]: give agent and key: the charter agent the proxy acts as"
            )
        key = KeyPair.load(mcp.key)
        if key.identity != mcp.agent:
            raise ConfigError(
                f"{config.source.name}: [mcp] key: {mcp.key.name} belongs to {key.identity!r}, "
                f"not {mcp.agent!r}"
            )
        self.mcp: McpConfig = mcp
        self.url = url or service_url(config)
        # A submit waits for the call itself: longer than the tool may take, and than a hold.
        self.client = AsyncClient(
            self.url, key, timeout=max(90.0, mcp.call_timeout + 30, mcp.hold_seconds + 30)
        )

    def server(self) -> Any:
        """The SDK's low-level MCP server with this proxy's handlers."""
        from mcp import types
        from mcp.server import Server

        async def list_tools(_ctx: Any, _params: Any) -> types.ListToolsResult:
            listed = await self.tools()
            return types.ListToolsResult(
                tools=[
                    types.Tool(name=t["name"], description=t["description"], input_schema=t["input_schema"])
                    for t in listed
                ]
            )

        async def call_tool(_ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
            return types.CallToolResult.model_validate(
                await self.call(params.name, dict(params.arguments or {}))
            )

        return Server("answerable", on_list_tools=list_tools, on_call_tool=call_tool)

    async def tools(self) -> list[dict[str, Any]]:
        """The MCP tools the service exposes now (withheld ones are left out)."""
        return [
            op for op in await self.client.operations() if op.get("kind") == "mcp" and not op.get("withheld")
        ]

    async def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """One tools/call: its result as MCP's JSON (``content``, ``isError``, ``_meta``...)."""
        try:
            doc = await self.client.submit(name, arguments)
        except ServiceRefused as exc:  # not an intent (withheld, arguments refused, halted...)
            return _text(f"refused by answerable: {exc}", True, {"answerable/refused": exc.reason_code})
        except (ArgumentsInvalid, RecordInvalid) as exc:  # no JSON form (a lone surrogate): never sent
            return _text(f"refused by answerable: {exc}", True, {"answerable/refused": type(exc).__name__})
        intent_id = str(doc["intent_id"])
        deadline = time.monotonic() + self.mcp.hold_seconds
        try:
            while not doc.get("done") and self.mcp.pending == "hold" and time.monotonic() < deadline:
                doc = await self.client.wait(
                    intent_id, seconds=min(60.0, max(0.0, deadline - time.monotonic()))
                )
        except ServiceRefused as exc:  # the intent exists: say which, so nobody proposes it again
            return _text(
                f"intent {intent_id} is recorded ({doc.get('status')}); the service stopped answering "
                f"while it waited: {exc}. Ask GET /v1/intents/{intent_id} where it stands; do not call again",
                True,
                {"answerable/intent": intent_id, "answerable/status": doc.get("status"),
                 "answerable/review": doc.get("review_id")},
            )  # fmt: skip
        meta: dict[str, Any] = {"answerable/intent": intent_id, "answerable/status": doc.get("status")}
        if not doc.get("done"):
            meta["answerable/review"] = doc.get("review_id")
            return _text(
                f"waiting for a person: review {doc.get('review_id')} of intent {intent_id} "
                "(answerable approve or deny); this call has not run",
                False,
                meta,
            )
        if self.mcp.receipt == "wait":
            try:
                meta["answerable/receipt"] = await self.client.receipt(
                    intent_id, seconds=min(60.0, self.mcp.receipt_seconds)
                )
            except ServiceRefused as exc:
                meta["answerable/receipt_error"] = str(exc)
        else:
            meta["answerable/receipt_url"] = f"{self.url}/v1/receipts/{intent_id}"
        return _answer(doc, meta)

    async def aclose(self) -> None:
        await self.client.aclose()


def _text(text: str, is_error: bool, meta: dict[str, Any]) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": is_error, "_meta": meta}


def _answer(doc: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """The upstream's own result (content and structured content as it gave them), or why not."""
    status = doc.get("status")
    if status == "succeeded":
        result = doc.get("result")
        if not isinstance(result, dict):
            return _text("the call ran; its result was not kept here (its receipt proves it)", False, meta)
        answer = {k: result[k] for k in ("content", "structuredContent") if k in result}
        return {"content": [], **answer, "isError": False, "_meta": meta}
    decision = doc.get("decision") or {}
    if status == "denied" and decision.get("stop"):  # a stop overrules whatever the rules said
        said = f"stopped: {decision['stop']}; it did not run (asked again after a resume, it may)"
        return _text(said, True, meta)
    if status == "denied":
        policies = ", ".join(decision.get("policy_ids") or []) or "no rule permits it"
        return _text(f"denied by the rules ({policies}); it did not run", True, meta)
    error = (doc.get("execution") or {}).get("error")
    return _text(f"not done: {status}{f': {error}' if error else ''}", True, meta)
