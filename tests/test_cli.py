"""The CLI: exit codes, JSON documents others script against, and errors on stderr."""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import booking
from typer.testing import CliRunner

from answerable import Gateway, SQLiteLedger
from answerable.cli import app
from answerable.ledger import leaf_hash, verify_consistency, verify_inclusion

runner = CliRunner()


@pytest.fixture
async def used(gateway: Gateway, ledger: SQLiteLedger, ledger_path: Path) -> Path:
    for n in range(5):
        await gateway.submit(gateway.intent("executor", "carrier.book", booking(shipment=f"S-{n}")))
    ledger.close()
    return ledger_path


def run(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [str(a) for a in args])


def b64(text: str) -> bytes:
    return base64.b64decode(text)


def test_verify_passes_on_an_untouched_ledger(used: Path):
    """verify exits 0 and reports size and root."""
    result = run("verify", used, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is True
    assert doc["size"] == 2 + 5 * 4  # charter, rules; intent, decision, claim, execution each


def test_verify_names_the_first_bad_entry_and_exits_1(used: Path):
    """A flipped byte makes verify exit 1 naming the entry's index and id."""
    conn = sqlite3.connect(used, isolation_level=None)
    entry_id, data = conn.execute("SELECT id, data FROM entries WHERE idx = 7").fetchone()
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x01
    conn.execute("UPDATE entries SET data = ? WHERE idx = 7", (bytes(flipped),))
    conn.close()
    result = run("verify", used)
    assert result.exit_code == 1
    assert "ledger entry 7" in result.stderr
    assert entry_id in result.stderr


def test_verify_against_an_earlier_checkpoint_catches_rollback(used: Path, tmp_path: Path):
    """With --checkpoint, a ledger rolled back behind that checkpoint fails."""
    cp = tmp_path / "cp.txt"
    assert run("ledger", "checkpoint", used, "--out", cp).exit_code == 0
    assert run("verify", used, "--checkpoint", cp).exit_code == 0
    conn = sqlite3.connect(used, isolation_level=None)
    conn.execute("DELETE FROM entries WHERE idx >= 10")
    conn.execute("DELETE FROM nodes WHERE (i + 1) * (1 << level) > 10")
    conn.execute("DELETE FROM checkpoints")
    conn.execute("DELETE FROM causes WHERE idx >= 10")
    conn.close()
    assert run("verify", used).exit_code == 0  # a clean prefix, on its own, looks like a ledger
    result = run("verify", used, "--checkpoint", cp)
    assert result.exit_code == 1
    assert "removed" in result.stderr


def test_export_writes_the_exact_leaf_bytes_in_order(used: Path, tmp_path: Path):
    """Each exported line is the canonical JSON hashed as that leaf, with id, kind and causes."""
    out = tmp_path / "ledger.jsonl"
    assert run("ledger", "export", used, "--out", out).exit_code == 0
    lines = out.read_bytes().split(b"\n")[:-1]
    proof = json.loads(run("ledger", "prove", used, "--index", "3", "--json").stdout)
    assert leaf_hash(lines[3]) == b64(proof["leaf_hash"])
    docs = [json.loads(line) for line in lines]
    assert [d["kind"] for d in docs[:6]] == [
        "SystemCharter",
        "RulesetVersion",
        "Intent",
        "Decision",
        "Claim",
        "Execution",
    ]
    assert all({"id", "kind", "causes"} <= d.keys() for d in docs)


def test_prove_prints_a_proof_that_verifies(used: Path):
    """prove --json gives leaf_index, tree_size, leaf_hash, proof and root in base64."""
    doc = json.loads(run("ledger", "prove", used, "--index", "4", "--size", "9", "--json").stdout)
    assert set(doc) == {"leaf_index", "tree_size", "leaf_hash", "proof", "root"}
    verify_inclusion(
        doc["leaf_index"],
        doc["tree_size"],
        b64(doc["leaf_hash"]),
        [b64(p) for p in doc["proof"]],
        b64(doc["root"]),
    )


def test_prove_consistency_prints_a_proof_that_verifies(used: Path):
    """prove-consistency --json gives size1, size2, proof, root1 and root2 in base64."""
    doc = json.loads(run("ledger", "prove-consistency", used, "--from", "5", "--to", "17", "--json").stdout)
    assert set(doc) == {"size1", "size2", "proof", "root1", "root2"}
    verify_consistency(
        doc["size1"], doc["size2"], [b64(p) for p in doc["proof"]], b64(doc["root1"]), b64(doc["root2"])
    )


def test_proof_past_the_tree_size_exits_2(used: Path):
    """A proof for a leaf or size the ledger does not have is a usage error."""
    result = run("ledger", "prove", used, "--index", "99", "--json")
    assert result.exit_code == 2
    assert "leaf 99 in a tree of size 22" in result.stderr
    assert run("ledger", "prove-consistency", used, "--from", "3", "--to", "99").exit_code == 2


def test_key_prints_the_verifier_key(used: Path):
    """ledger key prints name+hash+base64."""
    key = run("ledger", "key", used).stdout.strip()
    name, key_hash, material = key.split("+", 2)
    assert name == "test.example/ledger"
    assert len(key_hash) == 8
    assert len(base64.b64decode(material)) == 33


def test_not_a_ledger_exits_2(tmp_path: Path):
    """A file that is not a ledger is named on stderr."""
    bogus = tmp_path / "bogus.db"
    bogus.write_text("not a database")
    result = run("verify", bogus)
    assert result.exit_code == 2
    assert "bogus.db is not an answerable ledger" in result.stderr


def test_anyone_may_halt_but_only_the_charter_may_resume(used: Path, tmp_path: Path, people):
    """halt is recorded with who and why; resume needs an authorized key; a halt needs the RI."""
    assert run("halt", used, "--by", "night-shift", "--reason", "medical orders slipping").exit_code == 0
    stranger_key, ops_key, ri_key = tmp_path / "m.key", tmp_path / "o.key", tmp_path / "r.key"
    people.stranger.save(stranger_key)
    people.operator.save(ops_key)
    people.ri.save(ri_key)
    refused = run("resume", used, "--by", people.stranger.identity, "--reason", "x", "--key", stranger_key)
    assert refused.exit_code == 1
    assert "not a person in the charter" in refused.stderr or "may not" in refused.stderr
    operator = run("resume", used, "--by", people.operator.identity, "--reason", "x", "--key", ops_key)
    assert operator.exit_code == 1
    assert "ri" in operator.stderr
    assert (
        run("resume", used, "--by", people.ri.identity, "--reason", "checked", "--key", ri_key).exit_code == 0
    )
    assert (
        run(
            "pause", used, "--by", "ops", "--reason", "flaky API", "--scope", "operation:carrier.book"
        ).exit_code
        == 0
    )
    result = run(
        "resume",
        used,
        "--by",
        people.operator.identity,
        "--reason",
        "ok",
        "--key",
        ops_key,
        "--scope",
        "operation:carrier.book",
    )
    assert result.exit_code == 0, result.stderr


def test_bad_scope_exits_2(used: Path):
    """A scope that is not system, agent:, operation: or resource_class: is a usage error."""
    result = run("pause", used, "--by", "x", "--reason", "y", "--scope", "planet:mars")
    assert result.exit_code == 2
    assert "planet:mars" in result.stderr


def test_quickstart_demo_runs_end_to_end(tmp_path: Path):
    """The quickstart governs refunds: allow, review, deny, halt, resume, and verifies its ledger."""
    result = run("demo", "quickstart", "--out", tmp_path / "qs")
    assert result.exit_code == 0, result.output
    assert "verified" in result.stdout
    assert (
        run(
            "verify", tmp_path / "qs" / "ledger.db", "--checkpoint", tmp_path / "qs" / "checkpoint.txt"
        ).exit_code
        == 0
    )


def test_rules_check_accepts_valid_rules_and_names_errors(tmp_path: Path):
    """A policy file that does not parse or validate exits 2 with the error; a good one exits 0."""
    from support import POLICIES, SCHEMA

    schema, good, bad, broken = (
        tmp_path / n for n in ("s.cedarschema", "ok.cedar", "bad.cedar", "broken.cedar")
    )
    schema.write_text(SCHEMA)
    good.write_text(POLICIES)
    bad.write_text(POLICIES.replace("resource.region", "resource.regoin"))
    broken.write_text("permit(principal,")
    ok = run("rules", "check", good, "--schema", schema)
    assert ok.exit_code == 0, ok.stderr
    assert "1 route to review" in ok.stdout
    invalid = run("rules", "check", bad, "--schema", schema)
    assert invalid.exit_code == 2
    assert "regoin" in invalid.stderr
    unparsable = run("rules", "check", broken, "--schema", schema)
    assert unparsable.exit_code == 2
    assert "do not parse" in unparsable.stderr
    missing = run("rules", "check", tmp_path / "nope.cedar", "--schema", schema)
    assert missing.exit_code == 2
    assert "nope.cedar" in missing.stderr


async def test_reviews_print_whole_ids_and_arguments_at_any_width_and_one_review_by_id(
    ledger: SQLiteLedger,
    ledger_path: Path,
    people,
    clock,
    world,  # type: ignore[no-untyped-def]
):
    from support import pending_review, reviewing_gateway

    gw = await reviewing_gateway(ledger, people, clock, world)
    review_id = await pending_review(gw, shipment="S-with-a-long-shipment-name-0000000000000000")
    gw.close()
    ledger.close()
    narrow = CliRunner().invoke(app, ["reviews", str(ledger_path), "--all"], env={"COLUMNS": "30"})
    assert narrow.exit_code == 0, narrow.output
    assert review_id in narrow.stdout
    assert "S-with-a-long-shipment-name-0000000000000000" in narrow.stdout
    one = run("reviews", ledger_path, "--id", review_id, "--json")
    assert one.exit_code == 0
    doc = json.loads(one.stdout)
    assert doc["review_id"] == review_id
    assert doc["arguments"]["cls"] == "medical"
    unknown = run("reviews", ledger_path, "--id", "no-such-review")
    assert unknown.exit_code == 2
    assert "[unknown_review]" in unknown.stderr


def test_halt_and_pause_print_json_when_asked(used: Path):
    halted = run("halt", used, "--by", "ri@logistics.example", "--reason", "storm", "--json")
    assert halted.exit_code == 0, halted.output
    doc = json.loads(halted.stdout)
    assert (doc["action"], doc["scope"], doc["by"]) == ("halt", "system", "ri@logistics.example")
    paused = json.loads(
        run("pause", used, "--by", "ops", "--reason", "x", "--scope", "agent:router", "--json").stdout
    )
    assert (paused["action"], paused["scope"]) == ("pause", "agent:router")


def test_help_names_values_as_users_write_them_never_by_python_type() -> None:
    """Every command's help, as ``answerable`` prints it: ``LEDGER``, ``--out FILE``, no ``<path>``."""
    import re

    from answerable.cli import command

    def walk(cmd: Any, name: str) -> Iterator[tuple[str, Any]]:
        yield name, cmd
        for sub_name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, f"{name} {sub_name}")

    seen = 0
    for name, cmd in walk(command(), "answerable"):
        text = cmd.get_help(cmd.context_class(cmd, info_name=name))
        assert not re.search(r"<(path|str|int|float|bool|list\[)", text), (name, text)
        seen += 1
    assert seen > 25


def test_the_command_line_imports_no_world_model_and_no_heavy_dependency_until_a_command_needs_it():
    """`answerable halt` must start fast (bench/cli_latency.py): importing the CLI loads no
    plugin (reading every package's entry points costs a halt about a tenth of its start-up);
    the whole command line (``answerable.cli.app``) loads the logistics plugin's command module
    only, not its world model, nor the gateway, Cedar, JSON Schema, httpx, FastAPI or asyncio (a
    halt appends and waits for its commit with no loop); nor the ledger, the records (pydantic),
    keys (cryptography) or Rich, which the commands that use them import (`answerable --help`
    needs none of them)."""
    import subprocess
    import sys

    def modules(code: str) -> set[str]:
        probe = (
            f"import sys, answerable.cli; {code}; "
            "print(' '.join({m if m.startswith('answerable') else m.split('.')[0] for m in sys.modules}))"
        )
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
        return set(done.stdout.split())

    bare = modules("pass")
    assert {"answerable.errors", "typer"} <= bare  # the probe sees
    assert "answerable.logistics.cli" not in bare
    loaded = modules("answerable.cli.app")
    assert {"answerable.errors", "typer", "answerable.logistics.cli"} <= loaded
    heavy = {"answerable.logistics.world", "answerable.logistics.agents", "answerable.logistics.service_view"}
    heavy |= {"answerable.gateway", "answerable.runtime", "cedarpy", "jsonschema"}
    heavy |= {"httpx", "fastapi", "numpy", "pandas", "statsmodels", "asyncio", "ssl"}
    heavy |= {"answerable.control", "answerable.records", "answerable.ledger.sqlite", "answerable.keys"}
    heavy |= {"pydantic", "cryptography", "rich"}
    assert not heavy & loaded, sorted(heavy & loaded)


def test_a_halt_loads_no_rich_no_cedar_and_no_event_loop(used: Path) -> None:
    """What `answerable halt` loads, start to exit: the ledger, control and the records, not
    a plugin, nor Rich (its one line is plain), Cedar, JSON Schema, the gateway or asyncio, nor cryptography's
    serialization package (every cipher and key format: Ed25519 raw keys need none of it)."""
    import subprocess
    import sys

    probe = (
        "import sys, answerable.cli as cli\n"
        f"sys.argv = ['answerable', 'halt', {str(used)!r}, '--by', 'pager', '--reason', 'probe']\n"
        "try:\n    cli.main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "print(' '.join(sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    printed, modules = done.stdout.splitlines()
    assert printed.startswith("halt recorded: ")
    assert printed.endswith(" on system by pager")
    everything = set(modules.split())
    loaded = {m if m.startswith("answerable") else m.split(".")[0] for m in everything}
    assert {"answerable.control", "answerable.ledger.sqlite", "answerable.records"} <= loaded
    heavy = {"rich", "cedarpy", "jsonschema", "answerable.gateway", "answerable.review", "asyncio"}
    heavy |= {"answerable.logistics.cli"}  # no plugin: a halt is a command of the core
    assert not heavy & loaded, sorted(heavy & loaded)
    assert "cryptography.hazmat.primitives.serialization" not in everything


@pytest.mark.parametrize(
    "line",
    [
        "halt recorded: 01a2-x on system by ri@logistics.example",
        "pause recorded: id on agent:router by ops",
        "on channel:a:b by x",  # `:a:` could be an emoji code: Rich prints it
        "by :smile: here",
        "by :no-such-code: here",
        "by a[bold]b[/bold] c",
        "by a[b] c",
        "by a\\[b] c",
        "by a]b",
        "tab\there",
        "bell\x07 and cr\r",
        "wide ａｂ and é",
        "",
        " lead and trail ",
    ],
)
def test_a_line_prints_as_typed_with_its_control_characters_escaped(
    line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`say` has one path and no Rich: markup and emoji codes print as typed (a name someone
    chose is neither styled nor turned into a picture, and nothing of it is dropped), control
    characters as escapes, so what a line carries cannot steer the terminal and it stays one line."""
    from answerable import _tty

    _tty.say(line)
    printed = capsys.readouterr().out
    assert printed.endswith("\n")
    body = printed[:-1]
    assert not any(ord(c) < 32 or 127 <= ord(c) < 160 for c in body)
    assert body.replace("\\x07", "\x07").replace("\\x0d", "\r").replace("\\x09", "\t") == line


@pytest.mark.parametrize(
    "argv",
    [
        ["halt", "--help"],
        ["halt"],
        ["halt", "x.db", "--by"],
        ["halt", "x.db", "--by", "a", "--reason", "r", "--nope"],
        ["resume", "--help"],
        ["ledger", "--help"],
        ["ledger", "prove", "--help"],
        ["ledger", "nope"],
        ["demo", "--help"],
        ["keys"],
        ["hlat", "x.db"],
        ["--help"],
        [],
    ],
    ids=" ".join,
)
def test_the_tree_built_for_one_command_says_what_the_whole_tree_says(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """main() builds only the command named first; its help, usage errors and exit codes are the
    whole tree's, byte for byte."""
    from answerable import cli

    monkeypatch.setattr("sys.argv", ["answerable", *argv])
    whole_tree = cli.command
    with monkeypatch.context() as patched:
        patched.setattr(cli, "command", lambda first=None: whole_tree())
        with pytest.raises(SystemExit) as whole:
            cli.main()
    expected = capsys.readouterr()
    with pytest.raises(SystemExit) as one:
        cli.main()
    got = capsys.readouterr()
    assert (got.out, got.err, one.value.code) == (expected.out, expected.err, whole.value.code)
    assert expected.out or expected.err


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["halt", "x.db", "--by", "a", "--reason", "r", "--nope"], "No such option: --nope"),
        (["hlat", "x.db"], "No such command 'hlat'"),
        (["verify"], "Missing argument 'LEDGER'"),
        (["ledger", "prove", "x.db", "--index", "many"], "Invalid value for '--index'"),
        (["why", "x.db", "--\x1b]52;c;aGk=\x07"], "\\x1b]52"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_a_command_line_click_refuses_is_one_line_exit_2(argv: list[str], said: str, tmp_path: Path) -> None:
    """Every input a user can type: one line, exit 2. Click's own report is four (usage, a hint, a
    blank line, the error); through the console script it is one, naming the help to read and
    with what the person typed escaped."""
    import subprocess
    import sys

    ran = subprocess.run(
        [str(Path(sys.executable).with_name("answerable")), *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert ran.returncode == 2, ran.stderr
    assert ran.stdout == ""
    assert ran.stderr.count("\n") == 1, ran.stderr
    assert ran.stderr.startswith("answerable: error: ")
    assert said in ran.stderr
    assert "--help'" in ran.stderr
    assert "\x1b" not in ran.stderr
    assert list(tmp_path.iterdir()) == []


def test_main_builds_only_the_command_named_first() -> None:
    from answerable import cli

    assert list(cli.command("halt").commands) == ["halt"]
    assert list(cli.command("ledger").commands) == ["ledger"]
    assert len(cli.command("hlat").commands) == len(cli.command().commands) > 20


def test_a_plugin_that_fails_to_load_is_one_line_and_the_core_commands_still_run(tmp_path: Path):
    """An installed plugin whose module raises: the whole command line (`--help`, a demo) says so
    in one line naming it, exit 2, no traceback; a command of the core never loads plugins."""
    import os
    import subprocess
    import sys

    site = tmp_path / "site"
    (site / "broken_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "broken_plugin.py").write_text("raise RuntimeError('half installed')\n")
    info = site / "broken_plugin-0.1.dist-info"
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[answerable.plugins]\nbroken = broken_plugin\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "answerable.cli", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

    for args in (["--help"], ["demo", "--help"]):
        done = cli(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.count("\n") == 1, done.stderr
        assert "the plugin broken (broken_plugin) failed to load: RuntimeError: half installed" in done.stderr
        assert "Traceback" not in done.stderr
    assert cli("halt", "--help").returncode == 0
