"""The "without" side of the lease-and-claims cost: this tree's gateway with them cut out.

A scratch copy of ``src/answerable`` is edited in the benchmark's temporary folder, never in
the package: the allowed path appends [Intent, Decision] with no Claim, no fence and no claim
guard (an idempotency key's guard stays; the benchmark's intents have none), builds no Claim
record, and skips the pre-call lease check; everything else (Cedar, control, canonical
arguments, the Execution) is this tree's code. Each edit must find its exact text:
when the gateway changes so that one no longer applies, the ablation says so and the cost
against it is not printed, rather than measuring something else.
"""

from __future__ import annotations

import shutil
from pathlib import Path

EDITS: tuple[tuple[str, str, int], ...] = (
    (
        "        # Made in the instant the decision was: one clock reading serves both.\n"
        '        claim = self._claim(intent, epoch, "policy", (intent.id, decision.id), at=decision.at)\n'
        "        await self.ledger.append(\n"
        "            [intent, decision, claim], fence=epoch, "
        "guards=[Guard(claim_key(intent.id), None), *keyed]\n"
        "        )\n",
        '        claim = Claim.model_construct(id="", epoch=epoch, via="policy")\n'
        "        await self.ledger.append([intent, decision], guards=keyed)\n",
        1,
    ),
    ("        self._still_holding(claim)\n        token = FencingToken", "        token = FencingToken", 1),
    (
        "await self.ledger.append([execution], fence=claim.epoch)",
        "await self.ledger.append([execution])",
        1,  # in _record_execution, which every claimed call's Execution goes through
    ),
    (
        "        if claim is not None:\n            causes = (claim.id, *causes)",
        '        if claim is not None and claim.via != "policy":\n            causes = (claim.id, *causes)',
        1,
    ),
)


class AblationStale(Exception):
    """The gateway no longer holds the text an edit removes."""


def make_tree(src: Path, into: Path) -> Path:
    """A copy of ``src`` (the folder holding ``answerable``) without lease checks and claims."""
    target = into / "without-claims" / "src"
    shutil.copytree(src / "answerable", target / "answerable")
    gateway = target / "answerable" / "gateway.py"
    text = gateway.read_text()
    for old, new, count in EDITS:
        if text.count(old) != count:
            raise AblationStale(f"expected {count} of {old.splitlines()[0].strip()!r} in gateway.py")
        text = text.replace(old, new)
    gateway.write_text(text)
    return target
