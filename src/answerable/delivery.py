"""What a record delivered by a bus between processes must pass before an agent sees it.

NATS delivers; the ledger decides. The service records every event and message before it
publishes it, so a delivery is admitted only when the ledger holds that record byte for byte, and
a message only when it carries its sender's valid signature by the key the charter in force gives
that agent. Anything else (a message published straight onto NATS, an altered one, one signed by
another key) is refused, recorded once as a ``Refusal`` on the bus, and never handled.

A subscriber group's handled marks live in the ledger's store too (``use_nonce``), so a
redelivery that reaches another replica, or the same one after a restart, is dropped silently.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping

from answerable.charter import CharterHistory
from answerable.clock import Clock, IdSource, SystemClock, rfc3339
from answerable.contract import ContractCheck
from answerable.errors import Conflict, EntryNotFound, SignatureInvalid
from answerable.keys import verify_signature
from answerable.ledger.base import Guard, LedgerStore, holds
from answerable.records import ExternalEvent, Message, Refusal, signing_bytes

__all__ = ["Admission", "LedgerMarks"]


class LedgerMarks:
    """Handled marks of subscriber groups, as nonces in the ledger's store."""

    def __init__(self, ledger: LedgerStore, clock: Clock | None = None) -> None:
        self.ledger = ledger
        self.clock = clock or SystemClock()

    async def seen(self, mark: str) -> bool:
        return await asyncio.to_thread(self.ledger.nonce_seen, mark)

    async def mark(self, mark: str) -> None:
        await self.mark_many([mark])

    async def mark_many(self, marks: list[str]) -> None:
        await asyncio.to_thread(self.ledger.mark_nonces, marks, self.clock.now_ns() // 1_000_000_000)


class Admission:
    """Judges deliveries against the ledger and the charter in force (see the module)."""

    def __init__(
        self,
        ledger: LedgerStore,
        *,
        agent: str | None = None,
        clock: Clock | None = None,
        ids: IdSource | None = None,
        keys: Mapping[str, str] | None = None,
    ) -> None:
        self.ledger = ledger
        self.keys = dict(keys or {})
        """Senders' public keys for a ledger that holds no charter (an ungoverned baseline run
        between processes); a charter in force always decides instead."""
        self.agent = agent
        """The agent receiving (None: any subscriber): under a contract it hears only its topics."""
        self.clock = clock or SystemClock()
        self.ids = ids or IdSource(self.clock)
        self._charters = CharterHistory()
        self.refused = 0

    async def __call__(self, record: Message | ExternalEvent, data: bytes, topic: str) -> str | None:
        return await asyncio.to_thread(self.judge, record, data, topic)

    def judge(self, record: Message | ExternalEvent, data: bytes, topic: str) -> str | None:
        """None when the record may be handled, delivered on ``topic``, else why not (one line).

        An event recorded in process carries no topic, so one delivered again on another topic
        is not caught here; an event brought in through the service, and a message, are."""
        try:
            stored = self.ledger.find(record.id)
        except EntryNotFound:
            return "not_recorded: the ledger holds no entry with this id (recorded before published)"
        if not holds(stored.data, data):
            return "altered: the bytes delivered differ from the entry the ledger holds"
        if isinstance(record, ExternalEvent) and record.topic is not None and record.topic != topic:
            return f"wrong_topic: an event of {record.topic!r} delivered on {topic!r}"
        if isinstance(record, Message):
            if record.topic != topic:
                return f"wrong_topic: a message of {record.topic!r} delivered on {topic!r}"
            charter = self._charters.advance(self.ledger).latest()
            contract = None if charter is None else charter.coordination
            if (
                contract is not None
                and self.agent is not None
                and self.agent not in ContractCheck(contract).subscribers(topic)
            ):
                return f"not_subscriber: the contract does not let {self.agent} hear {topic!r}"
            if charter is None:
                public_key = self.keys.get(record.sender)
            else:
                agent = next((a for a in charter.agents if a.name == record.sender), None)
                public_key = None if agent is None else agent.public_key
            if public_key is None:
                whose = "the charter in force" if charter is not None else "no charter, and the keys given,"
                return f"unsigned: {whose} gives {record.sender!r} no key to check a message by"
            try:
                verify_signature(public_key, record.signature, signing_bytes(record), who=record.sender)
            except SignatureInvalid as exc:
                return f"bad_signature: {exc}"
        return None

    async def refuse(self, record: Message | ExternalEvent | None, data: bytes, why: str) -> None:
        """Record the refusal once, however many subscribers were handed the same delivery."""
        digest = hashlib.sha256(data).hexdigest()
        code, _, detail = why.partition(": ")
        refusal = Refusal(
            id=self.ids.new(),
            at=rfc3339(self.clock.now_ns()),
            causes=(),
            claimed=record.sender if isinstance(record, Message) else "unknown",
            verified=False,
            channel="bus",
            target=(
                f"deliver {record.topic} {record.type}"
                if isinstance(record, Message)
                else f"deliver {getattr(record, 'type', 'record')}"
            )[:300],
            reason_code=code[:64] or "refused",
            detail=detail[:500],
            body_digest=digest,
            topic=record.topic if isinstance(record, Message) else None,
            type=record.type if isinstance(record, Message) else None,
        )
        try:
            await self.ledger.append([refusal], guards=[Guard(f"refused:{digest}", None)])
        except Conflict:  # another subscriber recorded this very delivery first
            return
        self.refused += 1
