"""HTTP Message Signatures (RFC 9421) with Ed25519, as agents sign their requests to the service.

A request covers ``@method``, ``@target-uri`` and ``content-digest`` (RFC 9530, SHA-256 of the
body), with the parameters ``created``, ``keyid`` (the agent's name in the charter), ``nonce``
and ``alg="ed25519"``. The server rebuilds the signature base from what it received, so a body,
method or URL changed on the way breaks the signature; ``created`` must lie within a window of
the server's clock, and the nonce must never have been seen (the store keeps them, so a replay is
refused even after a restart).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from cryptography.exceptions import InvalidSignature

from answerable.errors import NotAuthorized
from answerable.keys import KeyPair, public_key_of

__all__ = [
    "COVERED",
    "SKEW",
    "SignedRequest",
    "claimed_keyid",
    "content_digest",
    "normalized_uri",
    "sign_request",
    "verify_request",
]

COVERED = ("@method", "@target-uri", "content-digest")
SKEW = 300
"""Seconds a request's ``created`` may differ from the server's clock."""
LABEL = "sig1"
_PARAMS = re.compile(
    r'^sig1=\("@method" "@target-uri" "content-digest"\);created=(\d{1,12});keyid="([^"\\]{1,200})";'
    r'nonce="([A-Za-z0-9_-]{16,128})";alg="ed25519"$'
)
_SIGNATURE = re.compile(r"^sig1=:([A-Za-z0-9+/]+={0,2}):$")


def content_digest(body: bytes) -> str:
    """The RFC 9530 ``Content-Digest`` field value of ``body``."""
    return f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode()}:"


def _params(created: int, keyid: str, nonce: str) -> str:
    covered = " ".join(f'"{c}"' for c in COVERED)
    return f'({covered});created={created};keyid="{keyid}";nonce="{nonce}";alg="ed25519"'


def normalized_uri(uri: str) -> str:
    """The target URI as both sides sign it: scheme and host lower-case, a default port dropped."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    netloc = host if port is None or (scheme, port) in (("http", 80), ("https", 443)) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def _base(method: str, target_uri: str, digest: str, params: str) -> bytes:
    target_uri = normalized_uri(target_uri)
    lines = [
        f'"@method": {method.upper()}',
        f'"@target-uri": {target_uri}',
        f'"content-digest": {digest}',
        f'"@signature-params": {params}',
    ]
    return "\n".join(lines).encode()


def sign_request(key: KeyPair, method: str, target_uri: str, body: bytes, *, created: int) -> dict[str, str]:
    """The headers that sign a request: ``Content-Digest``, ``Signature-Input``, ``Signature``."""
    nonce = secrets.token_urlsafe(24)
    digest = content_digest(body)
    params = _params(created, key.identity, nonce)
    signature = key.sign(_base(method, target_uri, digest, params))
    return {
        "Content-Digest": digest,
        "Signature-Input": f"{LABEL}={params}",
        "Signature": f"{LABEL}=:{signature}:",
    }


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """Who signed a request that verified, and the nonce the store must not have seen."""

    keyid: str
    nonce: str
    created: int


def verify_request(
    method: str,
    target_uri: str,
    headers: Mapping[str, str],
    body: bytes,
    keys: Mapping[str, str],
    *,
    now: int,
    skew: int = SKEW,
) -> SignedRequest:
    """Check a request's signature against the public keys (base64, by name) in ``keys``.

    Raises:
        NotAuthorized: with ``reason_code`` ``unsigned``, ``bad_signature_input``,
            ``unknown_agent``, ``clock_skew``, ``bad_digest`` or ``bad_signature``.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    signature_input = lowered.get("signature-input")
    signature = lowered.get("signature")
    if not signature_input or not signature:
        raise _refuse("unsigned", "the request is not signed (Signature-Input and Signature, RFC 9421)")
    found = _PARAMS.match(signature_input.strip())
    sig = _SIGNATURE.match(signature.strip())
    if found is None or sig is None:
        raise _refuse(
            "bad_signature_input",
            'want Signature-Input sig1=("@method" "@target-uri" "content-digest");created=..;keyid="..";'
            'nonce="..";alg="ed25519" and Signature sig1=:base64:',
        )
    created, keyid, nonce = int(found.group(1)), found.group(2), found.group(3)
    public = keys.get(keyid)
    if public is None:
        raise _refuse("unknown_agent", f"keyid {keyid!r} is no agent with a key in the charter")
    if abs(now - created) > skew:
        raise _refuse(
            "clock_skew",
            f"created {created} is {now - created} s from the server's clock (window {skew} s)",
            keyid,
        )
    digest = content_digest(body)
    if lowered.get("content-digest", "").strip() != digest:
        raise _refuse("bad_digest", "Content-Digest is not the SHA-256 of the body", keyid)
    params = signature_input.strip()[len(LABEL) + 1 :]
    try:
        public_key_of(public).verify(
            base64.b64decode(sig.group(1)), _base(method, target_uri, digest, params)
        )
    except (InvalidSignature, ValueError) as exc:
        raise _refuse("bad_signature", f"the signature of {keyid!r} does not verify", keyid) from exc
    return SignedRequest(keyid, nonce, created)


def claimed_keyid(headers: Mapping[str, str]) -> str | None:
    """The ``keyid`` a request's Signature-Input names, before anything is verified (who it
    claims to be, for the record of a refusal), or None."""
    lowered = {k.lower(): v for k, v in headers.items()}
    found = _PARAMS.match(lowered.get("signature-input", "").strip())
    return None if found is None else found.group(2)


def _refuse(code: str, message: str, keyid: str = "") -> NotAuthorized:
    """A refusal; ``keyid`` names who the request claimed to be once that is known."""
    return NotAuthorized(message, who=keyid, reason_code=code)
