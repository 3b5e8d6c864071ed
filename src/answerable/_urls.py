"""A URL as it may be printed: without the secrets a URL can carry.

A user name and password (``http://user:pw@host``) or a token in the query (``?token=...``) are
credentials; an error message that quotes the URL whole puts them on a terminal, in a log, in
CI output. What is shown keeps what locates the service (scheme, host, port, path) and says that
the rest was there. A URL too malformed to take apart is not quoted at all. A webhook's path is
often its secret (a chat service's incoming hook is a bearer token in the path): for such a URL
the path is hidden too.
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["problem", "shown"]


def shown(url: str, *, path_secret: bool = False) -> str:
    """``url`` fit to print: its user information and query (and with ``path_secret`` its path)
    replaced by marks, or, when it does not parse as a URL, its length only."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port  # the port is read to refuse a malformed one
    except ValueError:
        return f"a malformed URL ({len(url)} characters, not shown)"
    if not parts.scheme or host is None or not url.isprintable():
        return f"a malformed URL ({len(url)} characters, not shown)"
    where = f"[{host}]" if ":" in host else host
    who = "(credentials hidden)@" if "@" in parts.netloc else ""
    query = "?(query hidden)" if parts.query else ""
    path = "/(path hidden)" if path_secret and parts.path.strip("/") else parts.path
    return f"{parts.scheme}://{who}{where}{'' if port is None else f':{port}'}{path}{query}"


def problem(url: str) -> str | None:
    """Why ``url`` names no HTTP service to reach, or None: checked where a URL is given (an
    operation's endpoint, a witness, a webhook, the service a client calls), so a typo is said
    at once, not as a socket's "Connection refused" or an httpx error on first use. Says what is
    wrong without quoting the URL (see :func:`shown`)."""
    if not isinstance(url, str):
        return f"a URL is text, not a {type(url).__name__}"
    try:
        parts = urlsplit(url)
        port = parts.port  # read to refuse a port out of range
    except ValueError as exc:
        return f"not a URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "want an http:// or https:// URL naming a host"
    if not url.isprintable() or " " in url:
        return "a URL holds no spaces or control characters"
    if port == 0:
        return "names port 0"
    return None
