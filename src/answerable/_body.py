"""A request's body, read no further than a limit, whatever its sender declared.

Shared by the service's API and the console, which answer a refusal each in their own shape.
"""

from __future__ import annotations

import re

from starlette.requests import ClientDisconnect, Request

__all__ = ["BodyRefused", "read_body"]

_DIGITS = re.compile(r"[0-9]+")


class BodyRefused(Exception):
    """Why a body was not read: ``status`` and a stable ``code`` for the caller's answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


async def read_body(request: Request, limit: int) -> bytes:
    """The body, at most ``limit`` bytes.

    Raises:
        BodyRefused: 413 ``body_too_large`` (declared or sent over the limit, or a length that is
            not a number); 400 ``client_disconnected`` (the sender went away before its body
            arrived: nobody is there to read the answer, and nothing is logged as a fault).
    """
    declared = request.headers.get("content-length")
    if declared is not None and (not _DIGITS.fullmatch(declared) or int(declared) > limit):
        raise BodyRefused(
            413, "body_too_large", f"the body is over {limit} bytes (or its length is not a number)"
        )
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyRefused(413, "body_too_large", f"the body is over {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise BodyRefused(
            400, "client_disconnected", "the client went away before its body arrived"
        ) from None
    return b"".join(chunks)
