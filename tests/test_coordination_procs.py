"""Decided messages across real OS processes: answers given by the CLI in another process deliver
held messages exactly once, and a kill -9 at a named point of a delivery leaves every message
recorded exactly once after a restart. The seed draws how many messages go (``ANSWERABLE_SEED=N``
replays one; ``make soak`` runs more seeds)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from coordination_child import REVIEWER
from procs import seeds

from answerable import SQLiteLedger
from answerable.records import Execution, Intent, Message, decode_entry

pytestmark = pytest.mark.crash
CHILD = Path(__file__).with_name("coordination_child.py")
CLI = Path(sys.executable).with_name("answerable")
TIMEOUT = 60


def lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def messages_for(ledger_path: Path) -> tuple[list[Intent], list[Message], list[Execution]]:
    with SQLiteLedger.open(ledger_path) as ledger:
        intents = [decode_entry(e.data) for e in ledger.of_kind("Intent")]
        messages = [decode_entry(e.data) for e in ledger.of_kind("Message")]
        executions = [decode_entry(e.data) for e in ledger.of_kind("Execution")]
    return intents, messages, executions  # type: ignore[return-value]


@pytest.mark.parametrize("seed", seeds())
def test_approvals_from_another_process_deliver_held_messages_exactly_once(tmp_path: Path, seed: int) -> None:
    ledger = tmp_path / "held.db"
    key = tmp_path / "desk.key"
    REVIEWER.save(key)
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(ledger), "hold", str(seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    reviews = json.loads(child.stdout.readline())["reviews"]
    for review in reviews:
        answered = subprocess.run(
            [str(CLI), "approve", str(ledger), str(review), "--by", REVIEWER.identity,
             "--reason", "the desk agrees", "--key", str(key)],
            capture_output=True, text=True, timeout=TIMEOUT, check=False,
        )  # fmt: skip
        assert answered.returncode == 0, (seed, answered.stderr)
    out, err = child.communicate(timeout=TIMEOUT)
    assert child.returncode == 0, (seed, err)
    assert lines(out)[-1] == {"delivered": len(reviews)}, seed
    intents, messages, executions = messages_for(ledger)
    sends = [i for i in intents if i.operation == "send:plans/route.plan"]
    assert len(sends) == len(reviews) == len(messages), seed
    for send in sends:
        assert len([m for m in messages if send.id in m.causes]) == 1, seed
        assert [x.status for x in executions if x.intent_id == send.id] == ["succeeded"], seed


@pytest.mark.parametrize("seed", seeds())
@pytest.mark.parametrize("point", ["claimed", "executed"])
def test_a_kill_at_a_named_point_of_delivery_leaves_every_message_recorded_once(
    tmp_path: Path, point: str, seed: int
) -> None:
    """``claimed``: killed before the last message was recorded, the restart records it;
    ``executed``: killed after, the restart finds it and does not record it again."""
    ledger = tmp_path / "crash.db"
    killed = subprocess.run(
        [sys.executable, str(CHILD), str(ledger), "send", str(seed), point],
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert killed.returncode == -9, (seed, killed.stderr)
    said = lines(killed.stdout)
    assert {"survived": True} not in said, seed
    before = int(said[0]["before"])  # type: ignore[call-overload]
    _intents, recorded, _ = messages_for(ledger)
    assert len(recorded) == before + (1 if point == "executed" else 0), seed
    recovered = subprocess.run(
        [sys.executable, str(CHILD), str(ledger), "recover", str(seed)],
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert recovered.returncode == 0, (seed, recovered.stderr)
    assert lines(recovered.stdout)[-1]["recovered"] == ["succeeded"], seed
    intents, messages, executions = messages_for(ledger)
    sends = [i for i in intents if i.operation == "send:plans/route.plan"]
    assert len(sends) == before + 1 == len(messages), seed
    for send in sends:
        assert len([m for m in messages if send.id in m.causes]) == 1, seed
        assert [x.status for x in executions if x.intent_id == send.id] == ["succeeded"], seed
