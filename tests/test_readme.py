"""Every code block of the README runs as written, and what the README says it prints, it prints.

Each block is tagged after its language (```python example, ```sh keys ...): the tag says which
test runs it, and the first test fails if a block has no test. Shell blocks run line by line in
bash with this venv's ``answerable`` on the PATH, in a fresh folder, as a reader would type them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from served import start

README = Path(__file__).parents[1] / "README.md"
BLOCK = re.compile(r"^```(\w+)(?: ([\w-]+))?\n(.*?)^```", re.S | re.M)
RUN = {
    "quickstart",
    "storm",
    "hints",
    "example",
    "after-example",
    "review",
    "serve",
    "agent",
    "keys",
    "publish",
    "postgres",
    "replay",
}
"""The tags of the blocks these tests run; ``text`` blocks are listings, not code."""


def blocks() -> dict[str, str]:
    found = {}
    for language, tag, body in BLOCK.findall(README.read_text()):
        assert language == "text" or tag, f"a ```{language} block has no tag: say which test runs it"
        if language != "text":
            assert tag not in found, f"two README blocks are tagged {tag!r}"
            found[tag] = body
    return found


def shell(block: str, cwd: Path) -> list[subprocess.CompletedProcess[str]]:
    """Run each command of a shell block (a trailing backslash continues it) in ``cwd``."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    commands = block.replace("\\\n", " ").strip().splitlines()
    done = []
    for command in commands:
        ran = subprocess.run(
            ["bash", "-c", command],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert ran.returncode == 0, (command, ran.stdout, ran.stderr)
        done.append(ran)
    return done


def python(block: str, cwd: Path) -> str:
    ran = subprocess.run(
        [sys.executable, "-c", block], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert ran.returncode == 0, ran.stderr
    return ran.stdout


def test_every_code_block_is_run_by_a_test() -> None:
    assert set(blocks()) == RUN


def test_the_quick_start_commands_are_what_ci_runs() -> None:
    """``make test`` is this run itself (``.ci/run`` calls it) and ``make demo`` is the storm block
    below plus the reports; a test cannot run the suite it is part of, so it checks they exist."""
    commands = [line.split("#")[0].strip() for line in blocks()["quickstart"].strip().splitlines()]
    assert commands == ["make demo", "make test"]
    makefile = (README.parent / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M)
    assert re.search(r"^test:", makefile, re.M)
    assert "answerable demo storm --seed 7 --mode all --out out/storm" in makefile
    assert "make test" in (README.parent / ".ci" / "run").read_text()


@pytest.mark.slow
def test_the_storm_block_runs_and_the_readme_table_is_what_it_measured(tmp_path: Path) -> None:
    ran = shell(blocks()["storm"], tmp_path)
    printed = "".join(r.stdout for r in ran)
    # Piped, as here and in CI, the table keeps its row names whole (Rich would fit it to 80 columns).
    assert "…" not in printed, printed
    runs = json.loads((tmp_path / "out" / "storm" / "result.json").read_text())["runs"]
    table = README.read_text().split("| seed 7, 7 days |", 1)[1].split("\n\n", 1)[0]
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:6]]
        for line in table.splitlines()[2:]
        if line.startswith("|")
    }
    modes = ("ungoverned", "rules", "governed", "monitored")
    assert table.splitlines()[0].split("|")[:4] == [f" {m} " for m in modes]
    for row, key in (
        ("medical on-time rate", "medical_on_time_rate"),
        ("retail on-time rate", "retail_on_time_rate"),
        ("time-critical retail on-time rate", "time_critical_on_time_rate"),
    ):
        assert [float(v) for v in rows[row]] == [round(runs[m][key], 3) for m in modes], row
    assert rows["hospital stock-out days"] == [str(runs[m]["hospital_stockout_days"]) for m in modes]
    assert rows["postponements run (per customer and day): to a hospital / with a time-critical line"] == [
        f"{runs[m]['medical_shipments_postponed']} / {runs[m]['time_critical_shipments_postponed']}"
        for m in modes
    ]
    money = (
        ("total cost: transport + handling + moving stock", "total_cost", "total_cost_change_pct"),
        ("margin (retail and medical units handled)", "margin", "margin_change_pct"),
        ("lateness penalties", "penalties", None),
    )
    for row, key, change in money:
        said = [int(v.split()[0].replace(",", "")) for v in rows[row]]
        assert said == [round(runs[m][key] / 100) for m in modes], row
        if change is not None:  # the change against ungoverned, as result.json has it
            changes = [v.split("(")[1].rstrip("%)") for v in rows[row][1:]]
            assert changes == [f"{runs[m][change]:+.2f}" for m in modes[1:]], row
    executed = [v.split(" / ") for v in rows["actions executed / attributed to the RI"]]
    assert executed == [[str(runs[m]["actions_executed"]), str(runs[m]["actions_attributed"])] for m in modes]
    reviews = rows["reviews raised / approved / denied"]
    for m, said in zip(modes, reviews, strict=True):
        r = runs[m]
        assert said == (
            f"{r['reviews_raised']} / {r['reviews_approved']} / {r['reviews_denied']}"
            if r["reviews_raised"]
            else "0"
        )
    waits = rows["review wait p50 / p95 (simulated minutes), reviewer-hours"]
    for m, said in zip(modes, waits, strict=True):
        r = runs[m]
        wanted = f"{r['review_wait_p50_minutes']} / {r['review_wait_p95_minutes']}, {r['reviewer_hours']}"
        assert said == (wanted if r["reviews_raised"] else "-"), m
    prose = README.read_text().replace("\n", " ")
    governed = runs["governed"]
    assert f"({governed['reviews_too_late']} of {governed['reviews_raised']} here)" in prose
    assert f"{governed['answers_against_guidance']} answers against the guidance" in prose
    penalties = [runs[m]["penalties"] for m in ("ungoverned", "rules")]
    assert f"{round(100 * (1 - penalties[1] / penalties[0]))}% fewer" in README.read_text().replace("\n", " ")


@pytest.mark.slow
def test_the_hints_block_shows_the_side_channel_ungoverned_and_refused_governed(tmp_path: Path) -> None:
    """Each coordination command prints what its comment says it prints."""
    ran = shell(blocks()["hints"], tmp_path)
    for command, result in zip(blocks()["hints"].strip().splitlines(), ran, strict=True):
        said = command.partition("# ")[2].strip()
        if said:
            assert said in result.stdout, (said, result.stdout)


def test_the_example_runs_twice_and_the_commands_after_it_work(tmp_path: Path) -> None:
    """Run twice: the second run resumes from the ledger instead of installing a second charter."""
    example = blocks()["example"]
    for _ in range(2):
        assert python(example, tmp_path).strip() == "succeeded invoiced ACME 1200 you@example.com"
    verified, _, halted = shell(blocks()["after-example"], tmp_path)
    assert "verified" in verified.stdout.lower() or "ok" in verified.stdout.lower(), verified.stdout
    assert (tmp_path / "cp.txt").read_text().count("\n") >= 3
    assert "halt recorded" in halted.stdout
    after = subprocess.run(
        [sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert after.stdout.split()[0] == "denied", (
        after.stdout + after.stderr
    )  # the halt stops the next run's call


def test_the_review_example_waits_for_an_answer_given_from_another_shell(tmp_path: Path) -> None:
    program = subprocess.Popen(
        [sys.executable, "-c", blocks()["review"]], cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    try:
        assert program.stdout is not None
        status, review_id = program.stdout.readline().split()
        assert status == "review"
        answer = (
            f"answerable approve review.db {review_id} --by clerk@example.com"
            ' --reason "ACME confirmed" --key clerk.key'
        )
        assert answer in README.read_text().replace("\n", " ").replace("REVIEW_ID", review_id).replace(
            "`", ""
        )
        shell(answer, tmp_path)
        assert program.stdout.read().strip() == "succeeded invoiced ACME 250000"
        assert program.wait(timeout=60) == 0
    finally:
        if program.poll() is None:
            program.kill()
            program.wait(timeout=60)
        if program.stdout is not None:
            program.stdout.close()


@pytest.mark.slow
def test_the_service_blocks_run_as_written(tmp_path: Path) -> None:
    """init and serve, the agent in ten lines, a key rotation the running service follows, and
    publishing the log and checking the ledger against it."""
    [init_line, serve_line] = [line.split("#")[0].strip() for line in blocks()["serve"].strip().splitlines()]
    assert (init_line, serve_line) == ("answerable init shop", "answerable serve shop/answerable.toml &")
    shell(init_line, tmp_path)
    running = start(tmp_path / "shop", 8470)  # the port the README's config names
    try:
        assert python(blocks()["agent"], tmp_path).strip() == "succeeded review True"
        shell(blocks()["keys"], tmp_path)
        assert running.proc.stderr is not None
        for line in running.proc.stderr:  # the running service puts the amended charter in force
            if line.startswith("answerable serve: charter v2"):
                break
        else:
            raise AssertionError("serve never put charter v2 in force")
        _, verified = shell(blocks()["publish"], tmp_path)
        assert (tmp_path / "public-log" / "checkpoint").is_file()
        assert not (tmp_path / "public-log" / "tile" / "entries").exists()  # --hashes-only
        assert "consistent" in verified.stdout.lower() or "verified" in verified.stdout.lower(), (
            verified.stdout
        )
        assert running.stop() == 0
    finally:
        if running.proc.poll() is None:
            running.stop()


@pytest.mark.slow
def test_the_postgres_block_moves_a_ledger_there_and_back_with_one_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from uuid import uuid4

    from backends import pg_url

    from answerable.ledger.postgres import drop_schema

    schema = f"answerable_t_{uuid4().hex[:12]}"
    monkeypatch.setenv("SCHEMA", schema)
    monkeypatch.setenv("ANSWERABLE_KEY_DIR", str(tmp_path / "keys"))
    try:
        ran = shell(blocks()["postgres"], tmp_path)
    finally:
        drop_schema(pg_url(schema))
    assert "verified" in ran[2].stdout.lower(), ran[2].stdout
    roots = {r.stderr.split("root ")[1].split(" ")[0] for r in (ran[1], ran[3])}
    assert len(roots) == 1, roots


def test_the_replay_block_changes_nothing_under_its_own_rules_and_names_what_a_stricter_one_refuses(
    tmp_path: Path,
) -> None:
    ran = shell(blocks()["replay"], tmp_path)
    assert ran[2].stdout.strip() == "5 intents, 5 replayed: 5 unchanged, 0 changed, 0 not replayable"
    report = json.loads(ran[4].stdout)
    assert (report["intents"], report["unchanged"], len(report["changed"])) == (5, 3, 2)
    assert sorted((c["recorded"], c["replayed"]) for c in report["changed"]) == [
        ("allow", "deny"),
        ("review", "deny"),
    ]
    assert all("refunds-over-20-eur-refused" in c["policies"] for c in report["changed"])
