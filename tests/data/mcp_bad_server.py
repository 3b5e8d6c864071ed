"""An MCP server (the SDK's low-level Server) with awkward tools the MCP tests govern.

``count`` answers against its own output schema (promises ``{"n": integer}``, returns
``{"n": "many"}``), so a client that checks results refuses the answer: a malformed result is
recorded, not trusted. ``tag`` takes arguments named like the gateway's own words
(``_operation``, ``operation``) and echoes what it received: they must reach it as arguments,
never steer which tool runs.
"""

from __future__ import annotations

import anyio
import mcp_types as types
from mcp.server import Server
from mcp.server.stdio import stdio_server

COUNT = types.Tool(
    name="count",
    description="Count the shop's orders.",
    input_schema={"type": "object", "properties": {}},
    output_schema={"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
)


TAG = types.Tool(
    name="tag",
    description="Tag an order.",
    input_schema={
        "type": "object",
        "properties": {"_operation": {"type": "string"}, "operation": {"type": "string"}},
        "required": ["_operation"],
    },
)


async def list_tools(_ctx: object, _params: object) -> types.ListToolsResult:
    return types.ListToolsResult(tools=[COUNT, TAG])


async def call_tool(_ctx: object, params: types.CallToolRequestParams) -> types.CallToolResult:
    if params.name == "tag":
        received = dict(params.arguments or {})
        return types.CallToolResult(
            content=[types.TextContent(type="text", text="tagged")], structured_content={"tag": received}
        )
    return types.CallToolResult(
        content=[types.TextContent(type="text", text="many")], structured_content={"n": "many"}
    )


server = Server("bad", on_list_tools=list_tools, on_call_tool=call_tool)


async def main() -> None:
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(main)
