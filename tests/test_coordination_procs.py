"""Messages across real OS processes: answers given by the CLI in another process deliver held
messages exactly once, a kill -9 at a named point of a delivery leaves every message recorded
exactly once after a restart, and a halt from the CLI lets no message land after it. The seed
draws how many messages go (``ANSWERABLE_SEED=N`` replays one; ``make soak`` runs more seeds)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from backends import make_backend
from coordination_child import REVIEWER
from procs import seeds

from answerable import SQLiteLedger
from answerable.records import Execution, Intent, Message, Refusal, decode_entry

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
def test_answers_given_while_no_system_ran_reach_the_sender_once_at_the_next_start(
    tmp_path: Path, seed: int
) -> None:
    """Plans held for review, their process killed with SIGKILL; the desk answers each with the
    CLI (the seed draws which it denies) while nothing runs. The next system delivers the
    approved ones and tells the router of each denial, citing the desk's answer; the one after
    tells it nothing again."""
    ledger = tmp_path / "parked.db"
    key = tmp_path / "desk.key"
    REVIEWER.save(key)
    parked = subprocess.run(
        [sys.executable, str(CHILD), str(ledger), "park", str(seed)],
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert parked.returncode == -9, (seed, parked.stderr)
    reviews = lines(parked.stdout)[0]["reviews"]
    assert isinstance(reviews, list), seed
    assert reviews, seed
    draw = random.Random(f"answers:{seed}")
    verdicts = {review: draw.choice(["approve", "deny"]) for review in reviews}
    for review, verdict in verdicts.items():
        answered = subprocess.run(
            [str(CLI), verdict, str(ledger), str(review), "--by", REVIEWER.identity,
             "--reason", f"the desk says {verdict}", "--key", str(key)],
            capture_output=True, text=True, timeout=TIMEOUT, check=False,
        )  # fmt: skip
        assert answered.returncode == 0, (seed, answered.stderr)
    with SQLiteLedger.open(ledger) as read:
        answers = [decode_entry(e.data) for e in read.of_kind("Approval")]
    denials = sorted(a.id for a in answers if getattr(a, "verdict", None) == "deny")  # type: ignore[attr-defined]
    assert len(denials) == list(verdicts.values()).count("deny"), seed
    heard = []
    for _ in range(2):
        listened = subprocess.run(
            [sys.executable, str(CHILD), str(ledger), "listen", str(seed)],
            capture_output=True, text=True, timeout=TIMEOUT, check=False,
        )  # fmt: skip
        assert listened.returncode == 0, (seed, listened.stderr)
        heard.append(lines(listened.stdout)[-1])
    first, second = heard
    assert (sorted(first["told"]), first["heard"]) == (denials, len(reviews) - len(denials)), (seed, verdicts)  # type: ignore[arg-type]
    assert second == {"told": [], "heard": 0}, (seed, verdicts)


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


@pytest.mark.parametrize("seed", seeds())
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_halt_from_another_process_lets_no_message_land_after_it(
    tmp_path: Path, backend: str, seed: int
) -> None:
    """A sender streams messages from several tasks (notes no rule decides, plans the rules
    allow); `answerable halt`, another process, commits a halt at a moment the seed draws. No
    Message may stand in the ledger after the halt: a message checked against control before the
    halt and appended after it was recorded and published after the halt (33 in 6 trials before
    the store's control head guarded the append). The sender's later messages are refused."""
    store = make_backend(backend, tmp_path)
    try:
        child = subprocess.Popen(
            [sys.executable, str(CHILD), store.target, "stream", str(seed)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert child.stdout is not None
        ready = json.loads(child.stdout.readline() or "{}")
        assert ready.get("ready"), (seed, child.communicate(timeout=TIMEOUT))
        ledger = store.open()
        wanted = random.Random(f"halt:{seed}").randint(20, 120)
        for line in child.stdout:  # the sender says each message it sent, up to 120
            if json.loads(line).get("sent", 0) >= wanted:
                break
        else:
            raise AssertionError((seed, child.communicate(timeout=TIMEOUT)))
        halted = subprocess.run(
            [str(CLI), "halt", store.target, "--by", "pager@ops.example", "--reason", "storm"],
            capture_output=True, text=True, timeout=TIMEOUT, check=False,
        )  # fmt: skip
        assert halted.returncode == 0, (seed, halted.stderr)
        out, err = child.communicate(timeout=TIMEOUT)
        assert child.returncode == 0, (seed, err)
        said = lines(out)[-1]
        senders = ready["workers"]
        where = f"seed {seed} on {backend}, halted after {wanted} messages, {senders} senders: {said}"
        [halt] = [e.index for e in ledger.of_kind("Control") if decode_entry(e.data).action == "halt"]
        messages = ledger.of_kind("Message")
        late = [e.index for e in messages if e.index > halt]
        assert late == [], f"{where}: messages recorded after the halt at {halt}: {late}"
        assert len(messages) >= wanted, where
        refusals = [e for e in ledger.of_kind("Refusal") if e.index > halt]
        assert sum(said["refused"].values()) >= 12, where
        assert refusals, where  # the notes after the halt were refused, and the refusals recorded
        assert all(isinstance(decode_entry(r.data), Refusal) for r in refusals), where
    finally:
        store.close()
