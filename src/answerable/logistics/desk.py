"""The storm desk as modelled people: reviewers with shifts, a capacity, a time to answer and a
rate of error, deciding each review from what it shows by written guidance.

Nothing here is a person, and the ledger says so: the charter marks each desk reviewer
``simulated`` and every answer carries the mark. Waiting is real in the simulation: an answer
is recorded at the simulated minute it is given, the intent runs only then, and an answer that
would come after the review expires is never given (the review closes with its rule's safe
default, and the day's plan goes on without it).

The desk sees what the review shows: the operation, the resource's class and the request's
context (``disruption``, ``past_due``, ``source_disrupted``), all in the Decision the review
cites, and what the customers' own reports that the proposal cites say (``cover_days``, the
hospital's stock on hand; ``time_critical``, a store's mark on one of the lines). The rules see
only the first group: the second is why a person is asked. The guidance is the scenario's, in
order; the first rule whose ``when`` matches decides.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from answerable.clock import FakeClock, parse_rfc3339
from answerable.errors import ConfigError
from answerable.gateway import Outcome
from answerable.keys import KeyPair
from answerable.ledger import LedgerStore, payload_of
from answerable.records import ExternalEvent, Intent, decode_entry

__all__ = ["FACTS", "DeskConfig", "GuidanceRule", "ModelledDesk", "ModelledReviewer", "cited", "facts_of"]

FACTS = (
    "operation",
    "class",
    "disruption",
    "past_due",
    "source_disrupted",
    "time_critical",
    "cover_days",
)
"""What a review shows the desk: the fields guidance may name."""
_VALUES: dict[str, tuple[object, ...]] = {
    "operation": ("shipment.reprioritize", "inventory.reallocate", "carrier.book", "warehouse.dispatch"),
    "class": ("medical", "retail"),
    "disruption": (True, False),
    "past_due": (True, False),
    "source_disrupted": (True, False),
    "time_critical": (True, False),
}
"""What each fact can be, so that guidance naming a value no review shows is refused, not silent."""
AT_LEAST = "_at_least"
_COUNTS = ("cover_days",)
"""Facts that are counts: guidance names them as ``cover_days_at_least``, never by equality."""


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class ModelledReviewer(_Strict):
    """One modelled person at the desk."""

    name: str = Field(min_length=1, max_length=200, pattern=r"^\S+$")
    shift_start_hour: int = Field(ge=0, le=23)
    shift_end_hour: int = Field(ge=1, le=24)
    """UTC hours; a shift stays within one day (a night desk is two reviewers, say 0-6 and 18-24)."""
    reviews_per_hour: float = Field(gt=0, le=600)
    """Capacity: they start at most this many reviews an hour; the rest queue."""
    answer_minutes_median: float = Field(gt=0, le=1440)
    answer_minutes_sigma: float = Field(ge=0, le=3)
    """Minutes to answer one review are log-normal with this median and shape."""
    error_rate: float = Field(ge=0, le=1)
    """The chance, drawn per answer, that they decide against the guidance."""

    @model_validator(mode="after")
    def _shift(self) -> ModelledReviewer:
        if self.shift_end_hour <= self.shift_start_hour:
            raise ValueError(f"reviewer {self.name}: shift_end_hour must be after shift_start_hour")
        return self


class GuidanceRule(_Strict):
    """One line of the desk's written guidance: when the review shows this, answer so."""

    when: dict[str, str | bool | int]
    verdict: Literal["approve", "deny"]
    why: str = Field(min_length=1)

    @field_validator("when")
    @classmethod
    def _known_facts(cls, when: dict[str, str | bool | int]) -> dict[str, str | bool | int]:
        named = [*(f for f in FACTS if f not in _COUNTS), *(f + AT_LEAST for f in _COUNTS)]
        unknown = sorted(set(when) - set(named))
        for name in unknown:
            if name in _COUNTS:
                raise ValueError(f"{name} is a count: name it {name + AT_LEAST!r} (at least so many)")
        if unknown:
            raise ValueError(f"guidance names {unknown[0]!r}, which no review shows; it may name {named}")
        operation = when.get("operation")
        for name in ("time_critical", "cover_days" + AT_LEAST):
            if name in when and operation not in (None, "shipment.reprioritize"):
                raise ValueError(
                    f"{name} is shown only on reviews of shipment.reprioritize, not {operation!r}: "
                    "this rule could never match"
                )
        for name, value in when.items():
            if name.endswith(AT_LEAST):
                if type(value) is not int or not 0 <= value <= 365:
                    raise ValueError(f"{name} is {value!r}; it is a whole number of days from 0 to 365")
            elif value not in _VALUES[name] or type(value) is not type(_VALUES[name][0]):
                raise ValueError(
                    f"{name} is {value!r}, which no review shows; it is one of {list(_VALUES[name])}"
                )
        return when

    def matches(self, facts: dict[str, Any]) -> bool:
        for name, wanted in self.when.items():
            if name.endswith(AT_LEAST):
                have = facts.get(name.removesuffix(AT_LEAST))
                if type(have) is not int or type(wanted) is not int or have < wanted:
                    return False
            elif facts.get(name) != wanted:
                return False
        return True


class DeskConfig(_Strict):
    """Who sits at the storm desk and the guidance they follow (``desk`` in a scenario file)."""

    reviewers: tuple[ModelledReviewer, ...] = Field(min_length=1)
    guidance: tuple[GuidanceRule, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct(self) -> DeskConfig:
        names = [r.name for r in self.reviewers]
        if len(set(names)) != len(names):
            raise ValueError("desk reviewers must have distinct names")
        for n, rule in enumerate(self.guidance[:-1]):
            if not rule.when:
                raise ValueError(
                    f"guidance rule {n + 1} matches every review, so the rules after it never apply; "
                    "put it last"
                )
        return self


def _reviewer(name: str, start: int, end: int) -> ModelledReviewer:
    return ModelledReviewer(
        name=name,
        shift_start_hour=start,
        shift_end_hour=end,
        reviews_per_hour=30,
        answer_minutes_median=6,
        answer_minutes_sigma=0.7,
        error_rate=0.02,
    )


DEFAULT_DESK = DeskConfig(
    reviewers=(
        _reviewer("desk-early-1@logistics.example", 5, 13),
        _reviewer("desk-early-2@logistics.example", 5, 13),
        _reviewer("desk-late@logistics.example", 12, 21),
    ),
    guidance=(
        GuidanceRule(
            when={"class": "medical", "past_due": True},
            verdict="deny",
            why="clinical priority: a medical order is not made late",
        ),
        GuidanceRule(
            when={"operation": "shipment.reprioritize", "class": "medical", "cover_days_at_least": 3},
            verdict="approve",
            why="the hospital reports three days of stock or more: it can wait out a day, or the "
            "storm, and the truck can carry what cannot wait",
        ),
        GuidanceRule(
            when={"class": "medical"},
            verdict="deny",
            why="clinical priority: medical supply is not postponed or moved out",
        ),
        GuidanceRule(
            when={"time_critical": True},
            verdict="deny",
            why="the store marked a line time-critical: it cannot wait either",
        ),
        GuidanceRule(when={}, verdict="approve", why="retail may wait while the storm lasts"),
    ),
)
"""Three modelled people: two on the early shift, when the day's plans are made and most reviews
open, one on the late shift; each answers in about six minutes, at most thirty reviews an hour,
and is wrong about one answer in fifty. The guidance is clinical priority with the two
exceptions a person with the facts makes: a hospital with stock on hand can wait a day, and a
store's time-critical line cannot."""


def desk_key(name: str) -> KeyPair:
    """A modelled reviewer's key, fixed by their name so a run replays."""
    return KeyPair.from_seed(name, hashlib.sha256(f"answerable-desk:{name}".encode()).digest())


@dataclass
class _Seat:
    reviewer: ModelledReviewer
    key: KeyPair
    free_ns: int = 0
    """When they can start their next review."""


class Reviews(Protocol):
    """What the desk answers reviews through: a gateway in this process, or the gateway's
    process asked over HTTP (the storm across processes)."""

    @property
    def ledger(self) -> LedgerStore: ...

    async def answer(
        self,
        review_id: str,
        *,
        key: KeyPair,
        verdict: Literal["approve", "deny"],
        reason: str,
        valid_for_seconds: int = 3600,
        simulated: bool = False,
    ) -> Outcome: ...

    async def settle_reviews(self) -> Any: ...


@dataclass
class ModelledDesk:
    """Answers reviews as the modelled reviewers would, on the simulation's clock."""

    gateway: Reviews
    clock: FakeClock
    config: DeskConfig
    seed: int
    seats: list[_Seat] = field(default_factory=list)
    answered: int = 0
    too_late: int = 0
    against_guidance: int = 0
    minutes_spent: float = 0.0
    """Minutes spent answering (not the hours staffed)."""

    def __post_init__(self) -> None:
        self.rng = random.Random(f"desk:{self.seed}")
        self._lock = asyncio.Lock()
        self._ticked = -1
        self.seats = [_Seat(r, desk_key(r.name)) for r in self.config.reviewers]

    async def __call__(self, outcome: Outcome) -> Outcome:
        """Answer one review when the modelled desk would, or leave it (too late) to expire.

        One answer at a time, each settled before the next: the simulation's clock moves to each
        answer's minute, so an answer given later may not overtake one still being acted on.
        """
        if outcome.review is None or outcome.decision is None:
            raise ConfigError(
                f"the desk answers reviews only, not a {outcome.status!r} outcome of intent "
                f"{outcome.intent.id}; hand it outcomes whose status is 'review'"
            )
        async with self._lock:
            await self._tick()
            return await self._answer(outcome)

    async def settle(self, outcomes: list[Outcome], _ctx: object = None) -> list[Outcome]:
        """Answer each review still waiting, in the order given (see
        :class:`answerable.logistics.agents.Desk`); the rest stay as they are."""
        return [await self(o) if o.status == "review" else o for o in outcomes]

    async def _tick(self) -> None:
        """Once per simulated hour, the gateway's own review clock: unanswered reviews escalate
        at their deadline and close at their expiry, as they would in a running service."""
        hour = self.clock.ns // 3_600_000_000_000
        if hour != self._ticked:
            self._ticked = hour
            await self.gateway.settle_reviews()

    async def _answer(self, outcome: Outcome) -> Outcome:
        review, decision = outcome.review, outcome.decision
        if review is None or decision is None:  # checked by the caller; kept for the type checker
            return outcome
        opened = parse_rfc3339(review.at)
        seat, start = self._seat(opened)
        minutes = self.rng.lognormvariate(
            math.log(seat.reviewer.answer_minutes_median), seat.reviewer.answer_minutes_sigma
        )
        answer_at = start + int(minutes * 60e9)
        expires = parse_rfc3339(review.expires_at) if review.expires_at else answer_at + 1
        if answer_at >= expires:
            self.too_late += 1  # nobody gets to it in time: it expires with its rule's safe default
            return outcome
        seat.free_ns = start + int(max(minutes, 60 / seat.reviewer.reviews_per_hour) * 60e9)
        self.minutes_spent += minutes
        facts = facts_of(
            decision, review.operation, outcome.intent, cited(self.gateway.ledger, outcome.intent)
        )
        verdict, why = self._decide(facts)
        if self.rng.random() < seat.reviewer.error_rate:
            verdict = "approve" if verdict == "deny" else "deny"
            why = f"{why} -- answered against the guidance (a modelled error)"
            self.against_guidance += 1
        # Recorded at its minute, or a little later when an answer given earlier by another
        # reviewer was recorded first (answers are recorded in the order reviews reached the desk).
        self.clock.ns = max(self.clock.ns, answer_at)
        self.answered += 1
        return await self.gateway.answer(
            review.id,
            key=seat.key,
            verdict=verdict,
            reason=f"{why} (modelled reviewer {seat.reviewer.name}, simulated)",
            valid_for_seconds=4 * 3600,
            simulated=True,
        )

    def _seat(self, opened: int) -> tuple[_Seat, int]:
        """The reviewer who can start soonest on shift, and when: each works their own queue, in
        parallel with the others (the simulation's clock says when answers are recorded, not
        when a reviewer may start)."""
        best: tuple[int, int] | None = None
        for n, seat in enumerate(self.seats):
            start = _on_shift(max(opened, seat.free_ns), seat.reviewer)
            if best is None or start < best[0]:
                best = (start, n)
        if best is None:  # the config requires a reviewer; this keeps mypy and a reader sure
            raise ValueError("the desk has no reviewer")
        return self.seats[best[1]], best[0]

    def _decide(self, facts: dict[str, Any]) -> tuple[Literal["approve", "deny"], str]:
        for rule in self.config.guidance:
            if rule.matches(facts):
                return rule.verdict, rule.why
        return "deny", "no guidance covers this; the safe answer is no"


def facts_of(
    decision: Any, operation: str, intent: Intent | None = None, reports: Sequence[ExternalEvent] = ()
) -> dict[str, Any]:
    """What the review shows: its operation, the resource's class and the request's context (the
    Decision), and what the customers' reports the proposal cites say about its shipment."""
    facts: dict[str, Any] = {"operation": operation}
    for entity in decision.entities:
        attrs = entity.get("attrs", {})
        if "class" in attrs and entity.get("uid", {}).get("type") not in ("Agent",):
            facts["class"] = attrs["class"]
    context = decision.request.get("context", {})
    if isinstance(context, dict):
        facts.update({k: v for k, v in context.items() if k in FACTS})
    if intent is not None and operation == "shipment.reprioritize":
        customer = str(intent.arguments.get("shipment", "")).split("@", 1)[0]
        lines = set(intent.arguments.get("orders") or ())
        facts["time_critical"] = False  # unless a store's cited report marks one of its lines
        for report in reports:
            body = report.payload
            if (report.source, report.type) == ("hospitals", "stock.cover"):
                cover = (body.get("cover_days") or {}).get(customer)
                if type(cover) is int:
                    facts["cover_days"] = cover
            elif (report.source, report.type) == ("stores", "orders.time_critical"):
                marked = lines & set(body.get("orders") or ())
                facts["time_critical"] = facts["time_critical"] or bool(marked)
    return facts


def cited(ledger: LedgerStore, intent: Intent) -> list[ExternalEvent]:
    """The outside reports an intent cites, as the ledger holds them (a proposal can point at a
    report; only the outside can have written it)."""
    out = []
    for cause in intent.causes:
        stored = ledger.find(cause)
        if stored.kind == "ExternalEvent":
            event = decode_entry(stored.data)
            if isinstance(event, ExternalEvent):
                out.append(event.model_copy(update={"payload": payload_of(ledger, event.payload)}))
    return out


def _on_shift(at: int, reviewer: ModelledReviewer) -> int:
    """The first instant at or after ``at`` within the reviewer's daily shift (UTC hours)."""
    moment = datetime.fromtimestamp(at / 1e9, tz=UTC)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    start = day.replace(hour=reviewer.shift_start_hour)
    end_ns = int(day.timestamp() * 1e9) + reviewer.shift_end_hour * 3_600_000_000_000
    if at < int(start.timestamp() * 1e9):
        return int(start.timestamp() * 1e9)
    if at < end_ns:
        return at
    return int(start.timestamp() * 1e9) + 86_400_000_000_000  # the next day's shift
