"""A URL as it may be printed: without the secrets a URL can carry.

A user name and password (``http://user:pw@host``) or a token in the query (``?token=...``) are
credentials; an error message that quotes the URL whole puts them on a terminal, in a log, in
CI output. What is shown keeps what locates the service (scheme, host, port, path) and says that
the rest was there. A URL too malformed to take apart is not quoted at all. (A webhook whose path
is its secret is a URL the config only checks for its scheme; it is shown only when that is wrong.)
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["shown"]


def shown(url: str) -> str:
    """``url`` fit to print: its user information and query replaced by marks, or, when it does
    not parse as a URL, its length only."""
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
    return f"{parts.scheme}://{who}{where}{'' if port is None else f':{port}'}{parts.path}{query}"
