"""What governing an MCP tool costs: one tool called directly, and through ``answerable mcp-proxy``
in front of ``answerable serve``, in one run; and how long a receipt takes to exist.

Run: ``python bench/mcp_proxy.py`` (``--quick`` for a smoke run, ``--json`` for one JSON document).

What is measured: an MCP client of the official SDK calls ``lookup`` on the real MCP server the
tests use (``tests/data/mcp_shop_server.py``, on stdio), one call at a time, timing each call
from the client. Directly, the call is one JSON-RPC round trip to the server. Through the proxy
it is also: the proxy's signed HTTP request to the service, the intent, decision, claim and
execution appended durably (fsync per group commit), Cedar, the call to the same server on the
service's own stdio connection, and the answer back. With ``receipt = "handle"`` the answer
carries the receipt's address; the receipt wait is then timed as the fetch of that receipt right
after the answer (the service signs a checkpoint covering the call when none does yet). With
``receipt = "wait"`` (the default) the answer carries the receipt itself: that run is timed too.
Start-up (the processes, the MCP handshake) is left out. Not pinned: four processes take part.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters

from answerable.client import Client as Answerable
from answerable.keys import KeyPair

ROOT = Path(__file__).resolve().parent.parent
SHOP = ROOT / "tests" / "data" / "mcp_shop_server.py"
CLI = [sys.executable, "-m", "answerable.cli"]
POLICIES = '\n@id("shop-lookup")\npermit(principal, action == Action::"shop.lookup", resource);\n'


def _cli(*args: str, cwd: Path) -> str:
    done = subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"answerable {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _system(folder: Path, port: int) -> str:
    _cli("init", str(folder), cwd=folder.parent)
    (folder / "shop_server.py").write_text(SHOP.read_text())
    agent = str(json.loads((folder / "charter.json").read_text())["agents"][0]["name"])
    toml = folder / "answerable.toml"
    toml.write_text(
        toml.read_text().replace("port = 8470", f"port = {port}")
        + f'\n[mcp]\nagent = "{agent}"\nkey = "agent.key"\nreceipt = "handle"\n'
        f'service = "http://127.0.0.1:{port}"\n\n'
        f'[mcp.servers.shop]\ncommand = ["{sys.executable}", "shop_server.py"]\n'
    )
    declared = _cli("mcp-schema", "answerable.toml", cwd=folder)
    with (folder / "schema.cedarschema").open("a") as schema:
        schema.write("\n" + "".join(line for line in declared.splitlines(True) if not line.startswith("//")))
    with (folder / "policies.cedar").open("a") as policies:
        policies.write(POLICIES)
    _cli("rules", "sign", "answerable.toml", "--key", "ri.key", cwd=folder)
    return agent


def _run(target: Any, n: int, receipts: Answerable | None) -> dict[str, list[int]]:
    name = (
        "lookup"
        if isinstance(target, StdioServerParameters) and "shop_server" in " ".join(target.args)
        else "shop.lookup"
    )

    async def main() -> dict[str, list[int]]:
        samples: dict[str, list[int]] = {"call": [], "receipt": []}
        async with Client(target, cache=None) as client:
            for i in range(n + 5):  # the first five warm up (imports, connections)
                t0 = time.perf_counter_ns()
                result = await client.call_tool(name, {"order": f"O-{i}"})
                t1 = time.perf_counter_ns()
                if result.is_error:
                    raise SystemExit(f"call {i}: {result.content}")
                meta = result.meta or {}
                if receipts is not None and "answerable/receipt_url" in meta:
                    intent = str(meta["answerable/intent"])
                    await anyio.to_thread.run_sync(receipts.receipt, intent)
                    samples["receipt"].append(time.perf_counter_ns() - t1)
                elif receipts is not None and "answerable/receipt" not in meta:
                    raise SystemExit(f"call {i}: no receipt: {meta}")
                if i >= 5:
                    samples["call"].append(t1 - t0)
            return samples

    return anyio.run(main)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _pct(samples: list[int], q: float) -> float:
    """The q-th percentile in milliseconds (nearest rank)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 20 calls each")
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    n = 20 if args.quick else args.calls
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "shop"
        port = _free_port()
        agent = _system(folder, port)
        env = {**os.environ, "SHOP_EFFECTS": str(folder / "effects.log")}
        direct = _run(
            StdioServerParameters(
                command=sys.executable, args=[str(folder / "shop_server.py")], env=env, cwd=str(folder)
            ),
            n,
            None,
        )
        serve = subprocess.Popen(
            [*CLI, "serve", "answerable.toml"], cwd=folder, stderr=subprocess.PIPE, text=True
        )
        try:
            assert serve.stderr is not None
            for line in serve.stderr:
                if line.startswith("answerable ready on"):
                    break
            proxy = StdioServerParameters(
                command=sys.executable,
                args=["-m", "answerable.cli", "mcp-proxy", "answerable.toml"],
                cwd=str(folder),
            )
            with Answerable(f"http://127.0.0.1:{port}", KeyPair.load(folder / "agent.key")) as reader:
                handle = _run(proxy, n, reader)
                toml = folder / "answerable.toml"
                toml.write_text(toml.read_text().replace('receipt = "handle"', 'receipt = "wait"'))
                waited = _run(proxy, n, reader)
        finally:
            serve.terminate()
            serve.wait(timeout=60)
            if serve.stderr is not None:
                serve.stderr.close()
        del agent
    figures = {
        "calls": n,
        "direct_p50_ms": _pct(direct["call"], 50),
        "direct_p95_ms": _pct(direct["call"], 95),
        "proxy_p50_ms": _pct(handle["call"], 50),
        "proxy_p95_ms": _pct(handle["call"], 95),
        "receipt_fetch_p50_ms": _pct(handle["receipt"], 50),
        "receipt_fetch_p95_ms": _pct(handle["receipt"], 95),
        "proxy_with_receipt_p50_ms": _pct(waited["call"], 50),
        "proxy_with_receipt_p95_ms": _pct(waited["call"], 95),
    }
    figures["added_p50_ms"] = figures["proxy_p50_ms"] - figures["direct_p50_ms"]
    if args.json:
        print(json.dumps(figures))
        return
    rows = [
        ("direct to the server (stdio)", "direct"),
        ("through mcp-proxy + serve (handle)", "proxy"),
        ("receipt fetched after the answer", "receipt_fetch"),
        ("through the proxy, receipt inline", "proxy_with_receipt"),
    ]
    print(f"MCP tool call, {n} sequential calls each, one run (python bench/mcp_proxy.py)")
    for label, key in rows:
        p50, p95 = figures[f"{key}_p50_ms"], figures[f"{key}_p95_ms"]
        print(f"  {label:36s} p50 {p50:7.2f} ms  p95 {p95:7.2f} ms")
    print(f"  added by governing the call         p50 {figures['added_p50_ms']:7.2f} ms")


if __name__ == "__main__":
    main()
