"""``answerable init DIR``: a small working system a person can read, edit and serve as it is.

It governs one example operation, ``refund``: small refunds run, larger ones wait for the
reviewer, very large ones are refused. The RI's key signs the charter and the ruleset here,
once; ``answerable serve`` never needs it (it only reads what the RI signed).
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from answerable.charter import new_charter, new_ruleset
from answerable.config import resolved_path
from answerable.errors import ConfigError
from answerable.keys import KeyPair, identity_problem

__all__ = ["POLICIES", "SCHEMA", "init"]

SCHEMA = """\
entity Agent;
entity Resource { class: String };
action "refund" appliesTo {
  principal: [Agent],
  resource: [Resource],
  context: { order: String, amount_cents: Long }
};
"""

POLICIES = """\
@id("refunds-up-to-1000-eur")
permit(principal, action == Action::"refund", resource) when { context.amount_cents <= 100000 };

@id("refunds-over-100-eur-need-a-person")
@review("a refund over 100 EUR needs a person")
@deadline_minutes("60")
forbid(principal, action == Action::"refund", resource) when { context.amount_cents > 10000 };
"""

OPERATIONS = '''\
"""The operations this system governs. Each is a plain function; the service records the
intent, asks Cedar (which sees the arguments as its context), waits for a person where the
rules say so, and only then calls it, once."""

import json
from pathlib import Path

EFFECTS = Path(__file__).with_name("effects.jsonl")


def refund(order: str, amount_cents: int, idempotency_key: str) -> dict:
    """Refund an order, once per idempotency key, as a payment provider does: the config says
    ``idempotent = true``, so after a crash the service may call it again with the same key."""
    if EFFECTS.exists():
        for line in EFFECTS.read_text(encoding="utf-8").splitlines():
            done = json.loads(line)
            if done["key"] == idempotency_key:
                return {"refunded": done["amount_cents"], "order": done["order"]}
    with EFFECTS.open("a", encoding="utf-8") as out:
        out.write(json.dumps({"order": order, "amount_cents": amount_cents, "key": idempotency_key}) + "\\n")
    return {"refunded": amount_cents, "order": order}
'''

CONFIG = """\
# answerable serve {folder}/answerable.toml
[ledger]
path = "ledger.db"
origin = {origin}

[charter]
file = "charter.json"          # signed by the RI ({ri}); keys of people and agents

[rules]
policies = "policies.cedar"
schema = "schema.cedarschema"
signed = "ruleset.json"        # the RI's signature over exactly these two files

[[operations]]
name = "refund"
target = "operations:refund"
idempotent = true

[monitors]
file = "monitors.json"          # system-level invariants, checked on every new entry

[checkpoints]
every_seconds = 10
publish_dir = "log"             # the C2SP tlog-tiles tree, also served under /log/

[server]
host = "127.0.0.1"
port = 8470
"""


def _toml_string(text: str) -> str:
    """``text`` as a TOML basic string: a quote, a backslash or a control character in a
    folder's name ended the string early or escaped what followed (found by an audit: ``init
    'a"b'`` wrote a config ``serve`` could not read, ``init 'c\\u0041d'`` an origin ``cAd``)."""
    escaped = "".join(
        f"\\u{ord(c):04x}" if c in '"\\' or ord(c) < 0x20 or ord(c) == 0x7F else c for c in text
    )
    return f'"{escaped}"'


def _in_comment(text: str) -> str:
    """``text`` shown in a TOML comment: a line break in a folder's name ended the comment and
    made the rest of the line TOML; a name that is not UTF-8 could not be written at all."""
    shown = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join("?" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in shown)


def init(folder: Path, *, system: str | None = None) -> list[Path]:
    """Write the example system into ``folder`` (new, or empty); the files written.

    Raises:
        ConfigError: ``folder`` exists and is not empty, or cannot be written.
    """
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ConfigError(f"{folder} exists and is not an empty folder; init writes a new system")
    name = system or resolved_path(folder, "init").name or "system"
    # The system's name is in its people's identities (the longest is the reviewer's): a name
    # they cannot hold is said as the name's fault, and where it came from.
    problem = identity_problem(f"reviewer@{name}.example")
    if problem is not None:
        source = "system=" if system else "the folder's name: give another folder"
        raise ConfigError(
            f"the system's name {name[:60]!r} cannot be in its people's names: reviewer@NAME.example "
            f"{problem.split(' (')[0]}; the name comes from {source}"
        )
    ri = KeyPair.generate(f"ri@{name}.example")
    reviewer = KeyPair.generate(f"reviewer@{name}.example")
    agent = KeyPair.generate("refunds-agent")
    charter = new_charter(
        name, ri, agents=[agent.identity], reviewers=[reviewer], agent_keys={agent.identity: agent.public_b64}
    )
    ruleset = new_ruleset(POLICIES, SCHEMA, ri)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for key, file in ((ri, "ri.key"), (reviewer, "reviewer.key"), (agent, "agent.key")):
            key.save(folder / file, replace=False)
            written.append(folder / file)
        files = {
            "answerable.toml": CONFIG.format(
                folder=_in_comment(str(folder)),
                origin=_toml_string(f"answerable.local/{name}"),
                ri=_in_comment(ri.identity),
            ),
            "charter.json": orjson.dumps(
                charter.model_dump(mode="json"), option=orjson.OPT_INDENT_2
            ).decode(),
            "ruleset.json": orjson.dumps(
                ruleset.model_dump(mode="json"), option=orjson.OPT_INDENT_2
            ).decode(),
            "policies.cedar": POLICIES,
            "schema.cedarschema": SCHEMA,
            "monitors.json": '{"monitors": []}\n',
            "operations.py": OPERATIONS,
        }
        for file, text in files.items():
            (folder / file).write_text(text, encoding="utf-8")
            written.append(folder / file)
        os.chmod(folder, 0o700)
    except OSError as exc:
        raise ConfigError(f"cannot write {folder}: {exc.strerror}") from exc
    return written
