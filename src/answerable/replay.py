"""Replay: judge a ruleset against what happened before the RI signs it.

Every Decision records the full Cedar request and entities it was made from, so a recorded run
can be decided again under other rules without running anything. What comes out is a list of
the intents whose decision would change, each with the policies that would decide it now: the
RI reads what a new rule would have done to last week's traffic, not what its author hopes.

Replay re-decides; it does not re-run. An intent a halt or pause denied stays denied (the stop
is a fact of the run, not a rule), and what later happened to an intent (its review, its call)
is not simulated. An intent whose Decision holds no request Cedar could evaluate, or that no
Decision followed, is listed as not replayable with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from answerable.charter import charter_of
from answerable.errors import AnswerableError, ConfigError, RecordInvalid
from answerable.ledger.base import LedgerStore
from answerable.policy import CedarRequest, Ruleset, decide_many
from answerable.records import Decision, Intent, RulesetVersion, SystemCharter, decode_as
from answerable.signing import verify_ruleset

__all__ = [
    "Changed",
    "NotReplayable",
    "ReplayReport",
    "read_ruleset",
    "recorded_ruleset",
    "replay",
    "summary",
    "write_ruleset",
]

_NOT_BUILT = "building the Cedar request for"
"""How the gateway's Decision begins the error when an operation could not build its request."""
_REQUEST_MISFIT = "failed to build request"
_ENTITIES_MISFIT = "failed to parse entities from:"
"""How Cedar begins an error about a request or an entity its schema does not describe (an
action, a context attribute, an entity type or attribute it lacks or types otherwise)."""


@dataclass(frozen=True, slots=True)
class Changed:
    """An intent the replayed rules decide otherwise than it was decided."""

    intent: str
    operation: str
    recorded: str
    replayed: str
    policies: tuple[str, ...]
    """The policies that make the replayed decision (a deny with none: no permit matched)."""
    errors: tuple[str, ...] = ()
    """Cedar's errors, when an evaluation error made the replayed deny (as it would at the gateway)."""


@dataclass(frozen=True, slots=True)
class NotReplayable:
    intent: str
    why: str


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """The outcome of deciding every recorded intent again under one ruleset."""

    intents: int
    replayed: int
    unchanged: int
    changed: tuple[Changed, ...]
    not_replayable: tuple[NotReplayable, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "intents": self.intents,
            "replayed": self.replayed,
            "unchanged": self.unchanged,
            "changed": [
                {
                    "intent": c.intent,
                    "operation": c.operation,
                    "recorded": c.recorded,
                    "replayed": c.replayed,
                    "policies": list(c.policies),
                    "errors": list(c.errors),
                }
                for c in self.changed
            ],
            "not_replayable": [{"intent": n.intent, "why": n.why} for n in self.not_replayable],
        }


def recorded_ruleset(ledger: LedgerStore, version: int | None = None) -> RulesetVersion:
    """The RulesetVersion recorded as ``version``, or by default the one in force at the end:
    the last one the RI in force signed, as a gateway restarted on this ledger would load it
    (an entry signed by anyone else never took effect).

    Raises:
        ConfigError: the ledger records no ruleset, none with that version number (the versions
            it holds are named), or, by default, none the RI signed.
    """
    found: list[RulesetVersion] = []
    for stored in ledger.of_kind("RulesetVersion"):
        record = decode_as(stored.data, RulesetVersion)
        if record is None:
            raise RecordInvalid(
                f"ledger entry {stored.index} is stored as a RulesetVersion but is not one; "
                "run `answerable verify` on this ledger",
                record="RulesetVersion",
            )
        found.append(record)
    if not found:
        raise ConfigError(f"ledger {ledger.origin} records no ruleset")
    if version is None:
        charter = charter_of(ledger)
        signed = [r for r in found if _signed_by_ri(r, charter)]
        if not signed:
            raise ConfigError(f"ledger {ledger.origin} records no ruleset signed by the RI {charter.ri}")
        return signed[-1]
    for record in found:
        if record.version == version:
            return record
    held = ", ".join(str(r.version) for r in found)
    raise ConfigError(f"ledger {ledger.origin} records no ruleset version {version}; it holds {held}")


def _signed_by_ri(ruleset: RulesetVersion, charter: SystemCharter) -> bool:
    try:
        verify_ruleset(ruleset, charter)
    except AnswerableError:
        return False
    return True


def write_ruleset(ruleset: RulesetVersion, out: Path) -> tuple[Path, Path]:
    """Write a recorded ruleset as ``policies.cedar`` and ``schema.cedarschema`` (``schema.json``
    when the schema was recorded as JSON), byte for byte as signed; returns both paths.

    Raises:
        ConfigError: ``out`` exists and is not a directory, or cannot be written.
    """
    try:
        orjson.loads(ruleset.schema_text)
        schema_name = "schema.json"
    except orjson.JSONDecodeError:
        schema_name = "schema.cedarschema"
    policies, schema = out / "policies.cedar", out / schema_name
    other = out / ("schema.cedarschema" if schema_name == "schema.json" else "schema.json")
    try:
        out.mkdir(parents=True, exist_ok=True)
        policies.write_text(ruleset.policies, encoding="utf-8")
        schema.write_text(ruleset.schema_text, encoding="utf-8")
        other.unlink(missing_ok=True)  # a folder holds one schema, or `read_ruleset` refuses it
    except OSError as exc:
        raise ConfigError(f"cannot write the ruleset to {out}: {exc.strerror or exc}") from exc
    return policies, schema


def read_ruleset(folder: Path) -> tuple[str, str]:
    """The policies and schema text of a folder as :func:`write_ruleset` writes it:
    ``policies.cedar`` and one of ``schema.cedarschema`` or ``schema.json``.

    Raises:
        ConfigError: the folder lacks one of them, holds both schemas, or cannot be read.
    """
    schemas = [folder / n for n in ("schema.cedarschema", "schema.json") if (folder / n).is_file()]
    if not (folder / "policies.cedar").is_file() or len(schemas) != 1:
        raise ConfigError(
            f"rules folder {folder} must hold policies.cedar and one of schema.cedarschema or schema.json "
            "(as `answerable rules export` writes them)"
        )
    try:
        return (folder / "policies.cedar").read_text(encoding="utf-8"), schemas[0].read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the rules in {folder}: {exc}") from exc


def replay(ledger: LedgerStore, ruleset: Ruleset) -> ReplayReport:
    """Decide every recorded intent again under ``ruleset`` and compare with what was recorded.

    An intent whose recorded request or entities the replayed schema does not describe cannot
    be asked: it is listed as not replayable with Cedar's reason (a ledger that spans a schema
    change, say). One that already could not be asked when it was recorded (an operation the
    schema never declared) is compared as any other: it was denied then and is denied now.

    Raises:
        ConfigError: the replayed schema describes none of the recorded requests it is asked
            about: it is the wrong schema, and the first intent says how.
    """
    intents: dict[str, Intent] = {}
    for stored in ledger.of_kind("Intent"):
        intent = decode_as(stored.data, Intent)
        if intent is not None:
            intents.setdefault(intent.id, intent)
    decisions: dict[str, Decision] = {}
    for stored in ledger.of_kind("Decision"):
        decision = decode_as(stored.data, Decision)
        if decision is not None and decision.intent_id in intents:
            decisions.setdefault(decision.intent_id, decision)  # the first: the one acted on
    askable: list[tuple[Intent, Decision, CedarRequest]] = []
    skipped: list[NotReplayable] = []
    for intent_id, intent in intents.items():
        decision = decisions.get(intent_id)
        if decision is None:
            skipped.append(NotReplayable(intent_id, "no Decision was recorded for it (ungoverned)"))
            continue
        request = _request_of(decision)
        if isinstance(request, str):
            skipped.append(NotReplayable(intent_id, request))
            continue
        askable.append((intent, decision, request))
    verdicts = decide_many([request for _, _, request in askable], ruleset)
    changed: list[Changed] = []
    misfits: list[NotReplayable] = []
    for (intent, decision, _), verdict in zip(askable, verdicts, strict=True):
        misfit = _misfit(verdict.errors)
        if misfit is not None and _misfit(decision.errors) is None:
            misfits.append(
                NotReplayable(intent.id, f"the replayed schema does not fit its request: {misfit}")
            )
            continue
        replayed = "deny" if decision.control_id is not None else verdict.effect
        if replayed != decision.effect:
            errors = verdict.errors if replayed == "deny" and decision.control_id is None else ()
            changed.append(
                Changed(intent.id, intent.operation, decision.effect, replayed, verdict.policy_ids, errors)
            )
    if misfits and len(misfits) == len(askable):
        first = next(i for i, _, _ in askable if i.id == misfits[0].intent)
        raise ConfigError(
            f"the replayed schema does not match what was recorded: intent {first.id} "
            f"({first.operation}): {misfits[0].why.partition(': ')[2]}"
        )
    asked = len(askable) - len(misfits)
    return ReplayReport(
        intents=len(intents),
        replayed=asked,
        unchanged=asked - len(changed),
        changed=tuple(changed),
        not_replayable=(*skipped, *misfits),
    )


def _misfit(errors: Sequence[str]) -> str | None:
    """Cedar's complaint that a request or its entities do not fit the schema, shortened (the
    entities' own JSON, which Cedar repeats, left out), or None."""
    for error in errors:
        if error.startswith(_REQUEST_MISFIT):
            return error
        if error.startswith(_ENTITIES_MISFIT):
            return "failed to parse entities: " + error.rpartition("]: ")[2]
    return None


def _request_of(decision: Decision) -> CedarRequest | str:
    """The Cedar request a recorded Decision holds, or why it holds none Cedar could be asked again."""
    try:
        request = CedarRequest.from_record(decision.request, decision.entities)
    except RecordInvalid as exc:
        return f"its Decision {decision.id} holds no complete Cedar request: {exc}"
    built = [e for e in decision.errors if e.startswith(_NOT_BUILT)]
    if built:  # the gateway then records a stand-in request: Cedar was never asked the real one
        return f"its Decision {decision.id} was made without asking Cedar: {built[0]}"
    return request


def summary(report: ReplayReport) -> Sequence[str]:
    """The report as lines for a terminal."""
    lines = [
        f"{report.intents} intents, {report.replayed} replayed: {report.unchanged} unchanged, "
        f"{len(report.changed)} changed, {len(report.not_replayable)} not replayable"
    ]
    lines += [
        f"  changed  {c.intent}  {c.operation}: {c.recorded} -> {c.replayed}"
        f"  ({', '.join(c.policies) or 'no policy matched'})"
        for c in report.changed
    ]
    lines += [f"  skipped  {n.intent}: {n.why}" for n in report.not_replayable]
    return lines
