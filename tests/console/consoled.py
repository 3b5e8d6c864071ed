"""A real ``answerable serve`` with a ``[console]`` table, and a browser-like client for it.

httpx keeps a ``Secure`` cookie off plain http, as a browser would: the client reads the session
cookie from the log-in answer and sends it itself, so nothing here relies on the client to
enforce what the server must.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from served import CLI, Running, free_port, start

from answerable.keys import KeyPair
from answerable.scaffold import init

VIEWER = "auditor@example.org"
PASSWORDS = {"reviewer": "reviewer-password-1", "ri": "the-ri-password-22", "viewer": "viewer-password-333"}
COOKIE = "__Host-answerable-session"


def set_password(folder: Path, identity: str, password: str, *key: str) -> subprocess.CompletedProcess[str]:
    """``answerable users set-password answerable.toml IDENTITY [--key FILE]`` with ``password`` on stdin."""
    return subprocess.run(
        [*CLI, "users", "set-password", "answerable.toml", identity, *(("--key", *key) if key else ())],
        input=password + "\n",
        capture_output=True,
        text=True,
        cwd=folder,
        timeout=60,
        check=False,
    )


def console_system(folder: Path) -> dict[str, str]:
    """``answerable init`` plus a ``[console]`` table and the passwords of the reviewer, the RI
    (both with their keys) and a viewer; the identities by role."""
    init(folder)
    with (folder / "answerable.toml").open("a", encoding="utf-8") as config:
        config.write(
            f'\n[console]\nusers = "console-users.json"\nviewers = ["{VIEWER}"]\nsession_minutes = 60\n'
        )
    who = {
        "reviewer": KeyPair.load(folder / "reviewer.key").identity,
        "ri": KeyPair.load(folder / "ri.key").identity,
        "viewer": VIEWER,
    }
    for role, keyfile in (("reviewer", "reviewer.key"), ("ri", "ri.key"), ("viewer", None)):
        done = set_password(folder, who[role], PASSWORDS[role], *((keyfile,) if keyfile else ()))
        assert done.returncode == 0, done.stderr
    return who


@dataclass
class Browser:
    """One person's tab: the session cookie and CSRF token its log-in gave."""

    url: str
    http: httpx.Client
    cookie: str | None = None
    csrf: str | None = None
    me: dict[str, Any] = field(default_factory=dict)

    def login(self, identity: str, password: str) -> httpx.Response:
        answer = self.http.post(
            f"{self.url}/console/api/login",
            json={"identity": identity, "password": password},
            headers={"Origin": self.url},
        )
        if answer.status_code == 200:
            set_cookie = answer.headers["set-cookie"]
            self.cookie = set_cookie.split(";", 1)[0]
            self.me = answer.json()
            self.csrf = self.me["csrf_token"]
        return answer

    def headers(
        self, *, origin: str | None = "", csrf: str | None = "", session: bool = True
    ) -> dict[str, str]:
        made: dict[str, str] = {}
        if session and self.cookie:
            made["Cookie"] = self.cookie
        if origin is not None:
            made["Origin"] = origin or self.url
        if csrf is not None and (csrf or self.csrf):
            made["X-CSRF-Token"] = csrf or str(self.csrf)
        return made

    def post(self, path: str, doc: dict[str, Any], **how: Any) -> httpx.Response:
        return self.http.post(f"{self.url}/console/api/{path}", json=doc, headers=self.headers(**how))

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(
            f"{self.url}/console/api/{path}", params=params, headers=self.headers(origin=None)
        )


@dataclass
class Console:
    running: Running
    who: dict[str, str]
    tabs: list[Browser] = field(default_factory=list)
    """Every tab opened, closed when the service stops."""

    @property
    def url(self) -> str:
        return self.running.url

    @property
    def folder(self) -> Path:
        return self.running.folder

    def browser(self, role: str | None = None) -> Browser:
        tab = Browser(self.url, httpx.Client(timeout=30))
        self.tabs.append(tab)
        if role is not None:
            answer = tab.login(self.who[role], PASSWORDS[role])
            assert answer.status_code == 200, answer.text
        return tab

    def indexed(self) -> dict[str, int]:
        """Every entry's id -> its index in the ledger."""
        conn = sqlite3.connect(self.folder / "ledger.db")
        try:
            return dict(conn.execute("SELECT id, idx FROM entries").fetchall())
        finally:
            conn.close()

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        conn = sqlite3.connect(self.folder / "ledger.db")
        try:
            rows = conn.execute("SELECT data FROM entries WHERE kind = ? ORDER BY idx", (kind,))
            return [json.loads(d) for (d,) in rows]
        finally:
            conn.close()


def serve_console(folder: Path) -> Iterator[Console]:
    who = console_system(folder)
    running = start(folder, free_port())
    console = Console(running, who)
    try:
        yield console
    finally:
        for tab in console.tabs:
            tab.http.close()
        if running.proc.poll() is None:
            running.stop(signal.SIGKILL)
