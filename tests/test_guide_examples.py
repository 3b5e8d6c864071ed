"""The guides' complete examples (docs/*.md, ```sh example blocks) run as written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from otlp import otlp_receiver, spans_of
from served import free_port

DOCS = Path(__file__).parents[1] / "docs"


def run_example(guide: str, cwd: Path, replace: dict[str, str] | None = None) -> list[str]:
    """Run a guide's ``sh example`` block with bash (exit on the first failure); its stdout lines."""
    [script] = re.findall(r"^```sh example\n(.*?)^```", (DOCS / guide).read_text(), re.S | re.M)
    for old, new in (replace or {}).items():
        assert old in script, f"{guide}: the example no longer says {old!r}"
        script = script.replace(old, new)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    ran = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return ran.stdout.splitlines()


def test_the_replay_guide(tmp_path: Path) -> None:
    lines = run_example("replay.md", tmp_path)
    assert "5 intents, 5 replayed: 5 unchanged, 0 changed, 0 not replayable" in lines
    report = json.loads(lines[-1])
    assert (report["intents"], report["unchanged"], len(report["changed"])) == (5, 3, 2)
    assert sorted((c["recorded"], c["replayed"]) for c in report["changed"]) == [
        ("allow", "deny"),
        ("review", "deny"),
    ]
    assert all("refunds-over-20-eur-refused" in c["policies"] for c in report["changed"])


def test_the_opentelemetry_guide_against_a_receiver_on_loopback(tmp_path: Path) -> None:
    with otlp_receiver() as (endpoint, received):
        lines = run_example("opentelemetry.md", tmp_path, {"http://127.0.0.1:4318/v1/traces": endpoint})
        spans = spans_of(received)
    [said] = [line for line in lines if line.startswith("exported ")]
    count = int(said.split()[1])
    assert said == f"exported {count} spans (entries 0 to {count - 1}) to {endpoint}"
    assert len(spans) == count > 0
    assert any(getattr(s, "name", "").startswith("execute_tool ") for s in spans)


def test_the_mcp_guide(tmp_path: Path) -> None:
    """Two tools listed, the small refund done, the large one denied, the receipt checked offline."""
    first = "answerable init shop > /dev/null && cd shop\n"
    port = f'sed -i "s/port = 8470/port = {free_port()}/" answerable.toml\n'
    lines = run_example("mcp.md", tmp_path, {first: first + port})
    assert "tools: ['shop.lookup', 'shop.refund']" in lines
    assert "small: refunded 500 on O-1" in lines
    assert any(line.startswith("large: denied by the rules") for line in lines), lines
    assert lines[-1].startswith(
        "receipt ok: shop.refund by refunds-agent, allow, succeeded; in answerable.local/shop"
    )
    assert lines[-1].endswith("; result matches")
