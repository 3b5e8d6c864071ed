"""The MCP gateway end to end: an MCP client of the official SDK calls a real MCP server through
``answerable mcp-proxy`` (stdio and streamable HTTP) in front of a real ``answerable serve``.

What the world saw is counted from the shop server's own effects file, not from what anyone
answered; receipts are verified offline against the ledger's key, and refused with one byte changed.
"""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from mcp import Client, StdioServerParameters
from served import CLI, Running, Webhook, free_port, start

from answerable.client import Client as Answerable
from answerable.errors import ProofInvalid
from answerable.keys import KeyPair
from answerable.ledger import open_ledger
from answerable.receipt import verify_receipt

SHOP = Path(__file__).parent / "data" / "mcp_shop_server.py"
BAD = Path(__file__).parent / "data" / "mcp_bad_server.py"

POLICIES = """
@id("shop-lookup")
permit(principal, action in [Action::"shop.lookup", Action::"bad.count", Action::"bad.tag"], resource);

@id("shop-notes")
permit(principal, action in [Action::"shop.note", Action::"shop.evolve"], resource);

@id("shop-wipe-after-a-lookup-of-that-order")
permit(principal, action == Action::"shop.wipe", resource)
  when { context.prerequisites.contains("shop.lookup") };

@id("shop-refunds-up-to-1000-eur")
permit(principal, action == Action::"shop.refund", resource) when { context.amount_cents <= 100000 };

@id("shop-refunds-over-100-eur-need-a-person")
@review("a refund over 100 EUR needs a person")
forbid(principal, action == Action::"shop.refund", resource) when { context.amount_cents > 10000 };
"""


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def make_system(folder: Path, *, pending: str = "hold", receipt: str = "wait") -> None:
    """``answerable init``, an [mcp] table naming the shop server, its tools declared as
    ``answerable mcp-schema`` prints them, policies for them, signed by the RI."""
    done = _cli("init", str(folder), cwd=folder.parent)
    assert done.returncode == 0, done.stderr
    (folder / "shop_server.py").write_text(SHOP.read_text())
    (folder / "bad_server.py").write_text(BAD.read_text())
    agent = json.loads((folder / "charter.json").read_text())["agents"][0]["name"]
    with (folder / "answerable.toml").open("a") as toml:
        toml.write(
            f'\n[mcp]\nagent = "{agent}"\nkey = "agent.key"\npending = "{pending}"\nreceipt = "{receipt}"\n'
            "hold_seconds = 60\ncall_timeout_seconds = 3\n\n"
            f'[mcp.servers.shop]\ncommand = ["{sys.executable}", "shop_server.py"]\n\n'
            f'[mcp.servers.bad]\ncommand = ["{sys.executable}", "bad_server.py"]\n\n'
            '[[prerequisites]]\noperation = "shop.wipe"\nafter = "shop.lookup"\nsame = ["order"]\n'
        )
    printed = _cli("mcp-schema", "answerable.toml", cwd=folder)
    assert printed.returncode == 0, printed.stderr
    assert "// shop.pick: not declared: tool pick: input schema #/properties/choice: anyOf" in printed.stdout
    with (folder / "schema.cedarschema").open("a") as schema:
        schema.write("\n" + printed.stdout)
    with (folder / "policies.cedar").open("a") as policies:
        policies.write(POLICIES)
    # A budget over the tool's calls, pausing the tool itself: the service knows tools as scopes.
    budget = {
        "name": "refund-budget",
        "invariant": "refunds through the shop stay under 10,000 EUR in all",
        "shape": "budget",
        "source": {"kind": "Intent"},
        "where": {"operation": "shop.refund"},
        "amount": "arguments.amount_cents",
        "limit": 1_000_000,
        "respond": {"pause": "operation:shop.refund"},
    }
    (folder / "monitors.json").write_text(json.dumps({"monitors": [budget]}))
    signed = _cli("rules", "sign", "answerable.toml", "--key", "ri.key", cwd=folder)
    assert signed.returncode == 0, signed.stderr


@pytest.fixture(scope="module")
def hook() -> Iterator[Webhook]:
    """The shop's webhook: what a test waits on for a review to open, instead of asking."""
    webhook = Webhook()
    try:
        yield webhook
    finally:
        webhook.close()


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, hook: Webhook) -> Iterator[Running]:
    folder = tmp_path_factory.mktemp("mcp") / "shop"
    folder.parent.mkdir(exist_ok=True)
    make_system(folder)
    with (folder / "answerable.toml").open("a") as toml:
        toml.write(f'\n[notify]\nwebhook = "http://127.0.0.1:{hook.port}/hook"\n')
    running = start(folder)
    try:
        yield running
    finally:
        running.stop()


def effects(folder: Path) -> list[str]:
    path = folder / "effects.log"
    return path.read_text().splitlines() if path.exists() else []


def vkey(folder: Path) -> str:
    return _cli("ledger", "key", "ledger.db", cwd=folder).stdout.strip()


def proxy_params(system: Running) -> StdioServerParameters:
    port = system.url.rsplit(":", 1)[1]
    # The proxy reads [mcp] service from the config; the test's serve listens on its own port.
    toml = system.folder / "answerable.toml"
    text = toml.read_text()
    if "service = " not in text:
        toml.write_text(text.replace("[mcp]\n", f'[mcp]\nservice = "http://127.0.0.1:{port}"\n', 1))
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "answerable.cli", "mcp-proxy", "answerable.toml"],
        cwd=str(system.folder),
    )


@contextlib.contextmanager
def proxy_process(system: Running) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``answerable mcp-proxy --http`` beside the service, once it says it listens: the process
    and the URL of its streamable HTTP endpoint; stopped at the end if it still runs."""
    proxy_params(system)  # the config names the service
    port = free_port()
    proc = subprocess.Popen(
        [*CLI, "mcp-proxy", "answerable.toml", "--http", "--port", str(port)],
        cwd=system.folder,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "answerable mcp-proxy on http://127.0.0.1:" in line, line
        yield proc, f"http://127.0.0.1:{port}/mcp"
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
        if proc.stderr is not None:
            proc.stderr.close()


@pytest.fixture(scope="module")
def http_proxy(shop: Running) -> Iterator[str]:
    """The proxy's URL, for the tests that call through it."""
    with proxy_process(shop) as (_, url):
        yield url


def call(target: Any, calls: list[tuple[str, dict[str, Any]]]) -> tuple[list[str], list[dict[str, Any]]]:
    async def main() -> tuple[list[str], list[dict[str, Any]]]:
        async with Client(target, cache=None) as client:
            listed = [t.name for t in (await client.list_tools()).tools]
            results = []
            for name, arguments in calls:
                result = await client.call_tool(name, arguments)
                results.append(result.model_dump(mode="json", by_alias=True, exclude_none=True))
            return listed, results

    return anyio.run(main)


def test_stdio_allowed_denied_and_refused_calls_with_receipts(shop: Running) -> None:
    before = effects(shop.folder)
    listed, (allowed, denied, bad) = call(
        proxy_params(shop),
        [
            ("shop.refund", {"order": "O-1", "amount_cents": 500}),
            ("shop.wipe", {"order": "O-1"}),
            ("shop.refund", {"order": "O-1"}),
        ],
    )
    # Signed tools only: pick (anyOf) cannot be declared; the others were signed (note may be
    # withheld here, if the test that changes it upstream ran first).
    assert {"shop.evolve", "shop.lookup", "shop.refund", "shop.wipe"} <= set(listed)
    assert "shop.pick" not in listed
    assert allowed["isError"] is False
    assert allowed["structuredContent"] == {"result": "refunded 500 on O-1"}
    assert denied["isError"] is True
    assert "denied by the rules" in denied["content"][0]["text"]
    assert bad["isError"] is True
    assert "'amount_cents' is a required property" in bad["content"][0]["text"]
    assert effects(shop.folder)[len(before) :] == ["refund O-1 500"]  # the wipe never reached the shop

    key = vkey(shop.folder)
    ran = verify_receipt(allowed["_meta"]["answerable/receipt"], key)
    assert ran.execution is not None
    assert ran.execution.status == "succeeded"
    assert ran.result_checked
    assert ran.intent.arguments == {"order": "O-1", "amount_cents": 500}
    refused = verify_receipt(denied["_meta"]["answerable/receipt"], key)
    assert refused.execution is None
    assert refused.decision.effect == "deny"
    # The refused arguments made no intent: nothing to prove, and nothing recorded as run.
    assert "answerable/receipt" not in bad["_meta"]

    # The CLI checks the same receipt offline, and one changed byte anywhere in it is refused.
    receipt = shop.folder / "receipt.json"
    receipt.write_text(json.dumps(allowed["_meta"]["answerable/receipt"]))
    ok = _cli("receipt", "verify", str(receipt), "--key", key, cwd=shop.folder)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("receipt ok: shop.refund by ")


def _flip(text: str, line_prefix: str) -> str:
    """``text`` with one byte changed in the base64 payload of its first line starting ``line_prefix``."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.startswith(line_prefix):
            head, _, payload = line.rpartition(" ")
            raw = bytearray(base64.b64decode(payload))
            raw[len(raw) // 2] ^= 0x01
            lines[i] = (
                f"{head} {base64.b64encode(bytes(raw)).decode()}" if head else base64.b64encode(raw).decode()
            )
            return "\n".join(lines)
    raise AssertionError(f"no line starting {line_prefix!r}")


@pytest.mark.parametrize(
    "where", ["entry bytes", "proof hash", "checkpoint signature", "result", "execution left out"]
)
def test_a_receipt_with_one_byte_changed_is_refused(shop: Running, where: str) -> None:
    _, (result,) = call(proxy_params(shop), [("shop.lookup", {"order": "O-2"})])
    doc = result["_meta"]["answerable/receipt"]
    key = vkey(shop.folder)
    verify_receipt(doc, key)
    proof = doc["proofs"]["execution"]
    if where == "entry bytes":
        doc["proofs"]["execution"] = _flip(proof, "extra ")
    elif where == "proof hash":
        head, _, tail = proof.partition("\n\n")
        lines = head.split("\n")
        lines[3] = _flip(lines[3], "")
        doc["proofs"]["execution"] = "\n".join(lines) + "\n\n" + tail
    elif where == "checkpoint signature":
        doc["proofs"]["execution"] = _flip(proof, "— ")
    elif where == "result":
        doc["result"]["structuredContent"]["status"] = "refunded"
    else:  # a receipt that hides that an allowed call ran is no receipt
        del doc["proofs"]["execution"]
        doc.pop("result")
    with pytest.raises((ProofInvalid, Exception)) as refused:
        verify_receipt(doc, key)
    assert refused.type.__module__.startswith("answerable"), refused.type
    bad = shop.folder / f"bad-{where.replace(' ', '-')}.json"
    bad.write_bytes(orjson.dumps(doc))
    said = _cli("receipt", "verify", str(bad), "--key", key, cwd=shop.folder)
    # Exit 1, as answerable verify says a ledger was tampered with (2 is for input it cannot use).
    assert said.returncode == 1, said
    assert said.stdout == ""
    assert len(said.stderr.strip().splitlines()) == 1, said.stderr


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_a_reviewed_call_is_held_until_a_reviewer_approves_it_from_the_cli(
    shop: Running, hook: Webhook, transport: str, request: pytest.FixtureRequest
) -> None:
    target = proxy_params(shop) if transport == "stdio" else request.getfixturevalue("http_proxy")
    order = f"R-{transport}"
    before = effects(shop.folder)
    reviewer = KeyPair.load(shop.folder / "reviewer.key")
    seen: dict[str, Any] = {}
    reviews_before = sum(e["kind"] == "Review" for e in hook.events)

    async def main() -> None:
        async with Client(target, cache=None) as client, anyio.create_task_group() as group:

            async def held() -> None:
                seen["result"] = (
                    await client.call_tool("shop.refund", {"order": order, "amount_cents": 20000})
                ).model_dump(mode="json", by_alias=True, exclude_none=True)

            group.start_soon(held)
            with Answerable(shop.url, reviewer) as people:
                # The call reaches the service from the proxy's process: each review opened is
                # told to the webhook; look at the reviews each time one is (an earlier test's
                # may be told late), never on a timer.
                mine: list[dict[str, Any]] = []
                told = reviews_before
                while not mine:
                    told += 1

                    def opened(events: list[dict[str, Any]], told: int = told) -> bool:
                        return sum(e["kind"] == "Review" for e in events) >= told

                    assert await anyio.to_thread.run_sync(hook.wait_for, opened), hook.events
                    mine = [r for r in people.reviews() if r["arguments"].get("order") == order]
                review = mine[0]
                # Held: nothing ran, and nothing the MCP side could answer would run it.
                assert effects(shop.folder) == before
                approved = await anyio.to_thread.run_sync(
                        lambda: _cli(
                            "approve", "ledger.db", review["review_id"], "--by", reviewer.identity,
                            "--reason", "customer called; refund agreed", "--key", "reviewer.key",
                            cwd=shop.folder,
                        )
                    )  # fmt: skip
                assert approved.returncode == 0, approved.stderr

    anyio.run(main)
    result = seen["result"]
    assert result["isError"] is False
    assert result["structuredContent"] == {"result": f"refunded 20000 on {order}"}
    assert effects(shop.folder)[len(before) :] == [f"refund {order} 20000"]
    proven = verify_receipt(result["_meta"]["answerable/receipt"], vkey(shop.folder))
    assert proven.decision.effect == "review"
    assert [(a.by, a.reason) for a in proven.approvals] == [
        (reviewer.identity, "customer called; refund agreed")
    ]
    assert proven.result_checked


def test_streamable_http(shop: Running, http_proxy: str) -> None:
    before = effects(shop.folder)
    listed, (allowed, denied) = call(
        http_proxy, [("shop.refund", {"order": "H-1", "amount_cents": 700}), ("shop.wipe", {"order": "H-1"})]
    )
    assert "shop.refund" in listed
    assert "shop.pick" not in listed
    assert allowed["isError"] is False
    assert denied["isError"] is True
    assert effects(shop.folder)[len(before) :] == ["refund H-1 700"]
    verify_receipt(allowed["_meta"]["answerable/receipt"], vkey(shop.folder))
    verify_receipt(denied["_meta"]["answerable/receipt"], vkey(shop.folder))


def test_a_tool_changed_upstream_is_withheld_until_the_ri_signs_it(shop: Running) -> None:
    before = effects(shop.folder)
    _, (noted, evolved) = call(proxy_params(shop), [("shop.note", {"text": "a"}), ("shop.evolve", {})])
    assert noted["isError"] is False
    assert evolved["isError"] is False
    listed, (refused,) = call(
        proxy_params(shop), [("shop.note", {"text": "b", "also_email": "x@example.com"})]
    )
    assert "shop.note" not in listed
    assert refused["isError"] is True
    assert refused["_meta"]["answerable/refused"] == "tool_withheld"
    assert "changed upstream since the RI signed it" in refused["content"][0]["text"]
    assert effects(shop.folder)[len(before) :] == ["note a"]


def test_an_upstream_that_hangs_or_dies_leaves_a_recorded_ambiguous_call(shop: Running) -> None:
    before = effects(shop.folder)
    _, (hung, died, after) = call(
        proxy_params(shop),
        [
            ("shop.refund", {"order": "HANG", "amount_cents": 100}),
            ("shop.refund", {"order": "CRASH", "amount_cents": 100}),
            ("shop.lookup", {"order": "O-9"}),
        ],
    )
    for result in (hung, died):
        assert result["isError"] is True, result
        assert result["_meta"]["answerable/status"] == "ambiguous", result
    assert effects(shop.folder)[len(before) :] == ["refund CRASH 100"]
    # A call right after the crash is refused while the server is away (nothing offered, no
    # intent), or meets the dead link (not run, or not known whether sent).
    refused = after["_meta"].get("answerable/refused") == "tool_withheld"
    assert refused or after["_meta"]["answerable/status"] in ("succeeded", "failed", "ambiguous")
    with open_ledger(shop.folder / "ledger.db", create=False) as ledger:
        statuses = [
            orjson.loads(e.data)["status"] for e in ledger.of_kind("Execution")
            if orjson.loads(e.data)["operation"] == "shop.refund"
        ]  # fmt: skip
    assert statuses.count("ambiguous") >= 2
    # A result that breaks the tool's own output schema is not passed on as if it were valid.
    _, (malformed,) = call(proxy_params(shop), [("bad.count", {})])
    assert malformed["_meta"]["answerable/status"] == "ambiguous"
    assert "Invalid structured content returned by tool count" in malformed["content"][0]["text"]
    # The service starts the shop again on its own; a call meanwhile waits for it, then runs.
    _, (again,) = call(proxy_params(shop), [("shop.lookup", {"order": "O-10"})])
    assert again["_meta"]["answerable/status"] == "succeeded"


def test_a_prerequisite_is_read_from_the_ledger_and_survives_a_restart(shop: Running) -> None:
    """shop.wipe is allowed only after a lookup of the same order succeeded: the service reads
    that from the ledger (never from the call) and hands it to the rules; a restart reads it again."""
    before = effects(shop.folder)
    _, results = call(
        proxy_params(shop),
        [
            ("shop.wipe", {"order": "P-1"}),  # no lookup yet: denied
            ("shop.lookup", {"order": "P-2"}),
            ("shop.wipe", {"order": "P-1"}),  # a lookup of another order does not count
            ("shop.lookup", {"order": "P-1"}),
            ("shop.wipe", {"order": "P-1"}),  # now allowed
            ("shop.lookup", {"order": "P-3"}),
        ],
    )
    assert [r["_meta"]["answerable/status"] for r in results] == [
        "denied", "succeeded", "denied", "succeeded", "succeeded", "succeeded",
    ]  # fmt: skip
    assert effects(shop.folder)[len(before) :] == ["wipe P-1"]
    proven = verify_receipt(results[4]["_meta"]["answerable/receipt"], vkey(shop.folder))
    assert proven.decision.request["context"]["prerequisites"] == ["shop.lookup"]
    assert proven.decision.policy_ids == ("shop-wipe-after-a-lookup-of-that-order",)

    shop.stop()
    again = start(shop.folder, int(shop.url.rsplit(":", 1)[1]))  # the same port: proxies keep their config
    shop.url, shop.proc = again.url, again.proc
    _, (wiped, refused) = call(
        proxy_params(shop), [("shop.wipe", {"order": "P-3"}), ("shop.wipe", {"order": "P-4"})]
    )
    assert wiped["_meta"]["answerable/status"] == "succeeded"
    assert refused["_meta"]["answerable/status"] == "denied"
    assert effects(shop.folder)[len(before) :] == ["wipe P-1", "wipe P-3"]


def test_arguments_named_like_the_gateways_words_are_arguments(shop: Running) -> None:
    """A tool's argument called ``_operation`` reaches the tool; it never chooses which tool runs."""
    _, (tagged,) = call(
        proxy_params(shop), [("bad.tag", {"_operation": "bad.count", "operation": "shop.wipe"})]
    )
    assert tagged["_meta"]["answerable/status"] == "succeeded"
    assert tagged["structuredContent"] == {"tag": {"_operation": "bad.count", "operation": "shop.wipe"}}


def test_a_denied_review_is_in_the_receipt_and_bad_receipts_are_one_line(
    shop: Running, tmp_path: Path
) -> None:
    reviewer = KeyPair.load(shop.folder / "reviewer.key")
    toml = shop.folder / "answerable.toml"
    params = proxy_params(shop)  # first: it names the service in the config copied next
    answer_mode = shop.folder / "answer.toml"  # the same system, its proxy answering pending at once
    answer_mode.write_text(toml.read_text().replace('pending = "hold"', 'pending = "answer"'))
    params = StdioServerParameters(
        command=params.command, args=[*params.args[:-1], str(answer_mode)], cwd=params.cwd
    )
    before = effects(shop.folder)
    _, (pending,) = call(params, [("shop.refund", {"order": "D-1", "amount_cents": 30000})])
    assert pending["isError"] is False
    assert pending["_meta"]["answerable/status"] == "review"
    assert "this call has not run" in pending["content"][0]["text"]
    intent = pending["_meta"]["answerable/intent"]
    denied = _cli(
        "deny", "ledger.db", pending["_meta"]["answerable/review"], "--by", reviewer.identity,
        "--reason", "no such return", "--key", "reviewer.key", cwd=shop.folder,
    )  # fmt: skip
    assert denied.returncode == 0, denied.stderr
    with Answerable(shop.url, KeyPair.load(shop.folder / "agent.key")) as agent:
        receipt = agent.receipt(intent, seconds=30)
    proven = verify_receipt(receipt, vkey(shop.folder))
    assert proven.execution is None
    assert [(a.by, a.verdict, a.reason) for a in proven.approvals] == [
        (reviewer.identity, "deny", "no such return")
    ]
    saved = tmp_path / "denied.json"
    saved.write_text(json.dumps(receipt))
    said = _cli("receipt", "verify", str(saved), "--key", vkey(shop.folder), cwd=shop.folder)
    assert said.returncode == 0, said.stderr
    assert f"review; denied by {reviewer.identity}, did not run;" in said.stdout
    assert effects(shop.folder) == before

    # Input the command cannot use: exit 2, one line; a proof that does not hold: exit 1, one line.
    junk = tmp_path / "junk.json"
    for content, key, code in [
        (b"[]", vkey(shop.folder), 2),
        (b"\xff\xfe", vkey(shop.folder), 2),
        (saved.read_bytes(), "not-a-key", 2),
        (saved.read_bytes().replace(b"index ", b"index " + b"9" * 5000, 1), vkey(shop.folder), 1),
    ]:
        junk.write_bytes(content)
        said = _cli("receipt", "verify", str(junk), "--key", key, cwd=shop.folder)
        assert said.returncode == code, said
        assert said.stdout == ""
        assert len(said.stderr.strip().splitlines()) == 1, said.stderr


def test_a_server_named_like_an_operation_prefix_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "clash"
    done = _cli("init", str(folder), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    toml = folder / "answerable.toml"
    toml.write_text(
        toml.read_text().replace('name = "refund"', 'name = "shop.refund"')
        + f'\n[mcp.servers.shop]\ncommand = ["{sys.executable}", "shop_server.py"]\n'
    )
    said = _cli("mcp-schema", "answerable.toml", cwd=folder)
    assert said.returncode == 2
    assert said.stderr.strip().splitlines() == [
        "answerable: error: answerable.toml: [mcp.servers.shop]: its tools are named shop.TOOL, "
        "as is operation 'shop.refund'; rename one"
    ]


def test_a_server_that_cannot_be_reached_is_one_line(tmp_path: Path) -> None:
    """A server whose process exits at once: the connection's failure was printed as it happened,
    then again as the refusal (two lines). Said once now, with the server's name."""
    folder = tmp_path / "gone"
    done = _cli("init", str(folder), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    toml = folder / "answerable.toml"
    toml.write_text(toml.read_text() + '\n[mcp.servers.gone]\ncommand = ["/bin/false"]\n')
    said = _cli("mcp-schema", "answerable.toml", cwd=folder)
    assert said.returncode == 2
    assert said.stdout == ""
    [line] = said.stderr.strip().splitlines()
    assert line.startswith("answerable: error: [mcp.servers.gone]: cannot connect: ")


def test_a_tool_call_whose_arguments_have_no_json_form_is_a_refusal_not_a_crash(shop: Running) -> None:
    """Arguments from an MCP client can hold what no JSON carries onward (a lone surrogate from a
    ``\\ud800`` escape, NaN): the client refuses them before sending, and the proxy answers that
    as a refused tool call, as it answers the service's refusals. It let the error out."""
    from answerable.config import load_config
    from answerable.mcp_proxy import McpProxy

    proxy_params(shop)  # the config names the service
    proxy = McpProxy(load_config(shop.folder / "answerable.toml"), url=shop.url)
    before = effects(shop.folder)

    async def both() -> list[dict[str, Any]]:
        try:
            return [
                await proxy.call("shop.refund", {"order": "O-\ud800", "amount_cents": 1}),
                await proxy.call("shop.refund", {"order": "O-1", "amount_cents": float("nan")}),
            ]
        finally:
            await proxy.aclose()

    for refused in anyio.run(both):
        assert refused["isError"] is True
        assert refused["_meta"]["answerable/refused"] == "ArgumentsInvalid"
        assert "do not match its schema" in refused["content"][0]["text"]
    assert effects(shop.folder) == before


def test_the_http_proxy_stops_cleanly_on_ctrl_c_and_exits_3_when_it_cannot_listen(shop: Running) -> None:
    """As ``uvicorn.run`` had it, before the proxy announced itself only once listening: Ctrl-C
    is a clean stop (exit 0; it was 130). A port it cannot take is exit 3, uvicorn's own code:
    held here as the contract a script reads."""
    import signal
    import socket

    with proxy_process(shop) as (proc, _):
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        refused = _cli("mcp-proxy", "answerable.toml", "--http", "--port", str(busy), cwd=shop.folder)
    assert refused.returncode == 3, refused.stderr
    assert "answerable mcp-proxy on" not in refused.stderr
    assert "Traceback" not in refused.stderr
