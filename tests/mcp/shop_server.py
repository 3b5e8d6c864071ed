"""A small real MCP server (the official SDK's MCPServer) that the MCP tests govern.

``SHOP_EFFECTS`` names a file each call appends one line to, so a test counts the effects the
world saw, not what anyone said happened. ``SHOP_MODE`` makes it misbehave: ``hang`` (refund never
answers), ``crash`` (refund kills the process after its effect), ``change`` (lookup's schema
changes after the first call, and the server says its tool list changed).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from mcp.server.mcpserver import MCPServer

app = MCPServer("shop")
EFFECTS = Path(os.environ.get("SHOP_EFFECTS", "effects.log"))
MODE = os.environ.get("SHOP_MODE", "")


def _effect(line: str) -> None:
    with EFFECTS.open("a", encoding="utf-8") as out:
        out.write(line + "\n")


@app.tool()
def lookup(order: str) -> dict[str, object]:
    """Look an order up: its status and amount."""
    return {"order": order, "status": "paid", "amount_cents": 25000}


@app.tool()
def refund(order: str, amount_cents: int) -> str:
    """Refund part or all of an order."""
    if MODE == "hang":
        time.sleep(3600)
    _effect(f"refund {order} {amount_cents}")
    if MODE == "crash":
        os._exit(9)
    return f"refunded {amount_cents} on {order}"


@app.tool()
def wipe(order: str) -> str:
    """Delete an order and its history."""
    _effect(f"wipe {order}")
    return f"wiped {order}"


@app.tool()
def pick(choice: int | str) -> str:
    """A tool whose input the rules cannot see (oneOf/anyOf)."""
    return str(choice)


if __name__ == "__main__":
    print(f"shop server pid {os.getpid()}", file=sys.stderr)
    app.run()
