"""How the logistics system is governed: the charter and the Cedar rules (the desk that answers
reviews is modelled in :mod:`answerable.logistics.desk`).

The rules read like the RI's intent. Routine bookings, dispatches and reallocations pass on
approved rules; the prioritization decisions that the storm story turns on go to a person:
a medical shipment delayed past its due time, any reprioritization during a disruption, and
medical stock leaving its region while that region is disrupted.
"""

from __future__ import annotations

from typing import Any

from answerable.charter import new_charter, new_ruleset
from answerable.clock import Clock, IdSource
from answerable.keys import KeyPair
from answerable.logistics.desk import DeskConfig, desk_key
from answerable.records import RulesetVersion, SystemCharter

__all__ = ["COORDINATION", "GUIDANCE", "POLICIES", "RI", "SCHEMA", "charter", "ri_key", "ruleset"]

SCHEMA = """
entity Agent;
entity Route { region: String, stops: Long };
entity Dispatch { region: String, units: Long };
entity StockLot { class: String, sku: String, from_region: String, to_region: String };
entity Shipment { class: String, region: String };

action "carrier.book" appliesTo {
  principal: [Agent], resource: [Route], context: { disruption: Bool }
};
action "warehouse.dispatch" appliesTo {
  principal: [Agent], resource: [Dispatch], context: { disruption: Bool }
};
action "inventory.reallocate" appliesTo {
  principal: [Agent], resource: [StockLot], context: { source_disrupted: Bool }
};
action "shipment.reprioritize" appliesTo {
  principal: [Agent], resource: [Shipment], context: { disruption: Bool, past_due: Bool }
};
"""

POLICIES = """
@id("executor-books-and-dispatches")
permit(principal == Agent::"executor",
       action in [Action::"carrier.book", Action::"warehouse.dispatch"], resource);

@id("executor-reallocates-stock")
permit(principal == Agent::"executor", action == Action::"inventory.reallocate", resource);

@id("executor-reprioritizes-shipments")
permit(principal == Agent::"executor", action == Action::"shipment.reprioritize", resource);

@id("medical-delay-past-due-needs-review")
@review("a medical shipment would be delivered after its clinical due time")
forbid(principal, action == Action::"shipment.reprioritize", resource)
  when { resource.class == "medical" && context.past_due };

@id("reprioritization-during-disruption-needs-review")
@review("shipments are being reprioritized while a disruption is active")
forbid(principal, action == Action::"shipment.reprioritize", resource)
  when { context.disruption };

@id("medical-stock-leaving-disrupted-region-needs-review")
@review("medical stock would leave its hospitals' region during a disruption")
forbid(principal, action == Action::"inventory.reallocate", resource)
  when { resource.class == "medical" && context.source_disrupted };
"""

RI = "ri@logistics.example"


def ri_key() -> KeyPair:
    """The RI's key, fixed for a reproducible demo."""
    return KeyPair.from_seed(RI, b"\x52" * 32)


def _object(required: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": sorted(required),
        "properties": required,
        "additionalProperties": False,
    }


_DAY = {"type": "integer", "minimum": 0}
_COUNTS = {"type": "object", "additionalProperties": {"type": "integer"}}
_NAMES = {"type": "array", "items": {"type": "string"}}

COORDINATION: dict[str, Any] = {
    "channels": [
        {
            "topic": "forecast",
            "publishers": ["forecaster"],
            "subscribers": ["allocator"],
            "messages": [
                {
                    "type": "forecast",
                    "payload_schema": _object(
                        {"day": _DAY, "units": {"type": "object", "additionalProperties": _COUNTS}}
                    ),
                }
            ],
        },
        {
            "topic": "allocation",
            "publishers": ["allocator"],
            "subscribers": ["executor"],
            "messages": [
                {
                    "type": "allocation.plan",
                    "payload_schema": _object(
                        {
                            "day": _DAY,
                            "transfers": {
                                "type": "array",
                                "items": {"type": "array", "minItems": 4, "maxItems": 4},
                            },
                        }
                    ),
                }
            ],
        },
        {
            "topic": "routes",
            "publishers": ["router"],
            "subscribers": ["executor"],
            "messages": [
                {
                    "type": "route.plan",
                    "payload_schema": _object(
                        {
                            "region": {"type": "string"},
                            "day": _DAY,
                            "version": {"type": "integer", "minimum": 1},
                            "routes": {"type": "array"},
                            "lines": {"type": "object"},
                            "dropped": {"type": "array"},
                            "distance": {"type": "integer"},
                            "feasible": {"type": "boolean"},
                        }
                    ),
                }
            ],
        },
        {
            "topic": "routes-in",
            "publishers": ["executor"],
            "subscribers": ["router"],
            "messages": [
                {
                    "type": "allocation.done",
                    "payload_schema": _object(
                        {"day": _DAY, "stock": {"type": "object", "additionalProperties": _COUNTS}}
                    ),
                }
            ],
        },
        {
            "topic": "constraints",
            "publishers": ["executor"],
            "subscribers": ["allocator", "router"],
            "messages": [
                {
                    "type": "keep_stock",
                    "payload_schema": _object({"day": _DAY, "keep": {"type": "array"}}),
                },
                {
                    "type": "must_serve",
                    "payload_schema": _object(
                        {"region": {"type": "string"}, "day": _DAY, "customers": _NAMES}
                    ),
                },
            ],
        },
    ]
}
"""How the four agents may talk, signed with the charter: forecasts to the allocator, plans to
the executor, and the executor's refusals and stock back to the planners. Nothing else."""


def charter(
    agents: tuple[str, ...],
    clock: Clock,
    ids: IdSource,
    desk: DeskConfig,
    *,
    agent_keys: dict[str, str] | None = None,
) -> SystemCharter:
    """The system's charter: the RI, the agents, the storm desk's reviewers, each marked
    simulated (they are modelled people, and every answer they give says so), and the
    coordination contract the agents talk under. ``agent_keys``: the agents' public keys, when
    they run in processes of their own and sign what they say."""
    reviewers = [desk_key(r.name) for r in desk.reviewers]
    return new_charter(
        "national-logistics",
        ri_key(),
        agents=agents,
        agent_keys=agent_keys,
        reviewers=reviewers,
        simulated=[r.identity for r in reviewers],
        coordination=COORDINATION,
        clock=clock,
        ids=ids,
    )


STORM_RULES = ("medical-delay-past-due-needs-review", "reprioritization-during-disruption-needs-review")
"""The rules written once the storm failure was understood; version 1 did not have them."""


GUIDANCE = """
@id("clinical-priority-medical-shipments-are-not-postponed")
forbid(principal, action == Action::"shipment.reprioritize", resource)
  when { resource.class == "medical" && (context.past_due || context.disruption) };

@id("clinical-priority-medical-stock-stays-in-a-disrupted-region")
forbid(principal, action == Action::"inventory.reallocate", resource)
  when { resource.class == "medical" && context.source_disrupted };
"""
"""The storm desk's written guidance compiled to plain Cedar rules, wherever it uses only what
the request carries: "clinical priority: a medical shipment is not postponed, in a storm or past
its due day, and medical stock does not leave a disrupted region". Two lines of the guidance are
left out, because they read the customers' own reports (cited by the proposal, in the ledger),
which the request does not carry: "a hospital that reports three days of stock or more may wait
a day" (so the rule refuses every medical postponement in a storm) and "a store's time-critical
line may not wait" (so the rule lets every retail postponement through). Neither is beyond
Cedar: a request carrying the reported stock, or the days until a line is due, would let a rule
decide them; this schema carries ``past_due`` only. In ``rules`` mode these replace the review
rules, and no person is asked."""


def ruleset(
    clock: Clock, ids: IdSource, *, foresaw_the_storm: bool = True, review: bool = True
) -> RulesetVersion:
    """The signed rules: version 2 with the storm rules (sending the critical decisions to review,
    or, without ``review``, deciding them by the desk's guidance compiled to Cedar), or version 1
    as first approved without them."""
    ri = ri_key()
    if foresaw_the_storm and not review:
        base = "\n\n".join(chunk for chunk in POLICIES.split("\n\n") if "@review(" not in chunk)
        return new_ruleset(base + "\n" + GUIDANCE, SCHEMA, ri, version=2, clock=clock, ids=ids)
    if foresaw_the_storm:
        return new_ruleset(POLICIES, SCHEMA, ri, version=2, clock=clock, ids=ids)
    kept = [
        chunk
        for chunk in POLICIES.split("\n\n")
        if not any(f'@id("{rule}")' in chunk for rule in STORM_RULES)
    ]
    return new_ruleset("\n\n".join(kept), SCHEMA, ri, version=1, clock=clock, ids=ids)
