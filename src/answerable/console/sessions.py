"""Console sessions: server-side, revocable, each with its CSRF token; and the log-in rate limit.

The browser holds only a random 32-byte token in a ``__Host-`` cookie; the server keeps its
SHA-256, so a dump of the table logs nobody in. A session holds the person's unlocked signing
key (or none) in memory only: it ends when they log out, when it expires, when the service
stops, or when a new charter no longer gives them the roles they logged in with.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from answerable.keys import KeyPair

__all__ = ["COOKIE", "LoginLimit", "Session", "Sessions", "csrf_matches"]

COOKIE = "__Host-answerable-session"


@dataclass(frozen=True, slots=True)
class Session:
    """One logged-in person."""

    identity: str
    roles: tuple[str, ...]
    """The roles at log-in: the charter's (``ri``, ``reviewer``, ``operator``) and ``viewer``."""
    csrf_token: str
    key: KeyPair | None
    """Their signing key, unlocked by their password; None for a viewer or a person without one."""
    expires_at: float
    """Seconds since the epoch."""
    account: str = ""
    """A digest of the password hash they logged in with: a new password ends the session."""


class Sessions:
    """The sessions of one running service, keyed by the hash of their token."""

    def __init__(self, minutes: int, *, clock: Callable[[], float] = time.time) -> None:
        self.minutes = minutes
        self.clock = clock
        self._by_hash: dict[bytes, Session] = {}

    def open(
        self, identity: str, roles: tuple[str, ...], key: KeyPair | None, account: str = ""
    ) -> tuple[str, Session]:
        """A new session; (the token for the cookie, the session)."""
        self._forget_expired()
        token = secrets.token_urlsafe(32)
        session = Session(
            identity=identity,
            roles=roles,
            csrf_token=secrets.token_urlsafe(32),
            key=key,
            expires_at=self.clock() + self.minutes * 60,
            account=account,
        )
        self._by_hash[_hash(token)] = session
        return token, session

    def get(self, token: str | None) -> Session | None:
        """The live session of ``token``; None when there is none or it expired."""
        if not token:
            return None
        found = self._by_hash.get(_hash(token))
        if found is None:
            return None
        if found.expires_at <= self.clock():
            del self._by_hash[_hash(token)]
            return None
        return found

    def end(self, token: str | None) -> None:
        if token:
            self._by_hash.pop(_hash(token), None)

    def end_all(self, identity: str) -> int:
        """End every session of ``identity``; how many there were."""
        doomed = [h for h, s in self._by_hash.items() if s.identity == identity]
        for h in doomed:
            del self._by_hash[h]
        return len(doomed)

    def _forget_expired(self) -> None:
        now = self.clock()
        for h in [h for h, s in self._by_hash.items() if s.expires_at <= now]:
            del self._by_hash[h]


def csrf_matches(session: Session, given: str | None) -> bool:
    """Whether ``given`` is the session's CSRF token (compared in constant time)."""
    return given is not None and hmac.compare_digest(session.csrf_token.encode(), given.encode())


class LoginLimit:
    """Failed log-ins counted per client address and per identity within ``window`` seconds.

    Past ``failures`` from one address, log-ins from it are refused for every identity: a
    guesser is slowed to a few guesses a minute. An identity is refused from everywhere only past
    ``identity_failures`` (ten times as many by default), which takes guesses from many addresses
    at once. With one count for both, a guesser at one address could keep anyone, the RI
    included, out of the console for good with five wrong passwords a minute; the price is that
    ten addresses guess ten times as fast at one identity as one does (argon2id still makes each
    guess cost the server a core for a moment). An IPv6 address counts as its /64, which one host
    is commonly given whole.
    """

    def __init__(
        self,
        failures: int = 5,
        window: float = 60.0,
        *,
        identity_failures: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures = failures
        self.identity_failures = failures * 10 if identity_failures is None else identity_failures
        self.window = window
        self.clock = clock
        self._seen: dict[str, deque[float]] = {}

    def blocked(self, identity: str, address: str) -> float | None:
        """Seconds until a log-in for ``identity`` from ``address`` is heard again, or None."""
        now = self.clock()
        waits = []
        for key, most in zip(_keys(identity, address), (self.identity_failures, self.failures), strict=True):
            # Read, never made: a log-in refused here is not counted, so it must not take room
            # either (each new name tried from a blocked address took an entry, never dropped).
            times = self._seen.get(key)
            if times is None:
                continue
            self._trim(times, now)
            if not times:
                del self._seen[key]
            elif len(times) >= most:  # heard again once enough have left the window
                waits.append(times[len(times) - most] + self.window - now)
        return max(waits) if waits else None

    def failed(self, identity: str, address: str) -> None:
        now = self.clock()
        for key in _keys(identity, address):
            self._recent(key, now).append(now)
        if len(self._seen) > 100_000:  # a flood of names: drop the idle ones, not the memory
            for key in [k for k, t in self._seen.items() if not t or t[-1] <= now - self.window]:
                del self._seen[key]

    def forgive(self, identity: str, address: str) -> None:
        """Take back the attempt counted for a log-in that then succeeded."""
        for key in _keys(identity, address):
            times = self._seen.get(key)
            if times:
                times.pop()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._seen.setdefault(key, deque())
        self._trim(times, now)
        return times

    def _trim(self, times: deque[float], now: float) -> None:
        while times and times[0] <= now - self.window:
            times.popleft()


def _keys(identity: str, address: str) -> tuple[str, str]:
    """The two counts a log-in attempt falls under: its identity's and its source's."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:  # no address (a test client, a Unix socket): counted as given
        return f"id:{identity}", f"ip:{address}"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
        return f"id:{identity}", f"ip:{ipaddress.IPv6Network((ip, 64), strict=False)}"
    return f"id:{identity}", f"ip:{ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else ip}"


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()
