"""Decided messages across real OS processes: an answer given by the CLI in another process
delivers a held message exactly once, and a kill -9 at a named point of its delivery leaves it
recorded exactly once after a restart."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from coordination_child import REVIEWER

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


def test_an_approval_from_another_process_delivers_a_held_message_exactly_once(tmp_path: Path) -> None:
    ledger = tmp_path / "held.db"
    key = tmp_path / "desk.key"
    REVIEWER.save(key)
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(ledger), "hold"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    first = json.loads(child.stdout.readline())
    answered = subprocess.run(
        [str(CLI), "approve", str(ledger), str(first["review"]), "--by", REVIEWER.identity,
         "--reason", "the desk agrees", "--key", str(key)],
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert answered.returncode == 0, answered.stderr
    out, err = child.communicate(timeout=TIMEOUT)
    assert child.returncode == 0, err
    assert lines(out)[-1] == {"delivered": 1}
    _intents, messages, executions = messages_for(ledger)
    (message,) = [m for m in messages if first["intent"] in m.causes]
    assert message.payload == {"urgent": True}
    assert [x.status for x in executions if x.intent_id == first["intent"]] == ["succeeded"]


@pytest.mark.parametrize("point", ["claimed", "executed"])
def test_a_kill_at_a_named_point_of_delivery_leaves_the_message_recorded_once(
    tmp_path: Path, point: str
) -> None:
    """``claimed``: killed before the message was recorded, the restart records it; ``executed``:
    killed after, the restart finds it and does not record it again."""
    ledger = tmp_path / "crash.db"
    killed = subprocess.run(
        [sys.executable, str(CHILD), str(ledger), "send", point],
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr
    assert {"survived": True} not in lines(killed.stdout)
    _intents, before, _ = messages_for(ledger)
    assert len(before) == (1 if point == "executed" else 0)
    recovered = subprocess.run(
        [sys.executable, str(CHILD), str(ledger), "recover"],
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert recovered.returncode == 0, recovered.stderr
    assert lines(recovered.stdout)[-1]["recovered"] == ["succeeded"]
    intents, messages, executions = messages_for(ledger)
    (send,) = [i for i in intents if i.operation == "send:plans/route.plan"]
    assert [m for m in messages if send.id in m.causes] == messages
    assert len(messages) == 1
    assert [x.status for x in executions if x.intent_id == send.id] == ["succeeded"]
