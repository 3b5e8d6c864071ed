"""A real ``answerable serve`` process for the service tests, and agents and the CLI beside it."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from answerable.scaffold import init

CLI = [sys.executable, "-m", "answerable.cli"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Running:
    folder: Path
    url: str
    proc: subprocess.Popen[str]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=60)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        return code


def start(folder: Path, port: int | None = None, *extra: str, scheme: str = "http") -> Running:
    proc = subprocess.Popen(
        [*CLI, "serve", str(folder / "answerable.toml"), "--port", str(port or free_port()), *extra],
        stderr=subprocess.PIPE,
        text=True,
        cwd=folder,
    )
    said = []
    assert proc.stderr is not None
    for line in proc.stderr:  # blocks until serve says it is listening, or exits
        said.append(line)
        if line.startswith("answerable ready on"):
            return Running(folder, f"{scheme}://{line.split()[-1]}", proc)
    proc.wait(timeout=60)
    raise AssertionError(f"serve exited {proc.returncode} before it was ready: {''.join(said)}")


@contextlib.contextmanager
def serving(folder: Path) -> Iterator[Running]:
    """A new system (``answerable init``) in ``folder``, served until the block ends."""
    init(folder)
    running = start(folder, free_port())
    try:
        yield running
    finally:
        if running.proc.poll() is None:
            running.stop(signal.SIGKILL)


@pytest.fixture
def system(tmp_path: Path) -> Iterator[Running]:
    with serving(tmp_path / "shop") as running:
        yield running


AGENT = """
import json, sys
from answerable.client import Client, ServiceRefused
from answerable.keys import KeyPair
client = Client(sys.argv[1], KeyPair.load("agent.key"))
done = []
for line in sys.stdin:
    ask = json.loads(line)
    try:
        if ask.get("wait"):
            done.append(client.wait(ask["wait"], seconds=20))
        else:
            done.append(client.submit("refund", ask["arguments"], idempotency_key=ask.get("key")))
    except ServiceRefused as exc:
        done.append({"refused": exc.status, "reason_code": exc.reason_code})
print(json.dumps(done))
"""


STREAMING_AGENT = """
import json, sys
from answerable.client import Client
from answerable.keys import KeyPair
client = Client(sys.argv[1], KeyPair.load("agent.key"))
for line in sys.stdin.read().splitlines():
    ask = json.loads(line)
    print(json.dumps(client.submit("refund", ask["arguments"], idempotency_key=ask.get("key"))), flush=True)
"""
"""An agent that says each answer as soon as it has it."""


def agent(running: Running, *asks: dict[str, object]) -> list[dict[str, object]]:
    """Run an agent process that makes ``asks`` in order; what it got back."""
    done = subprocess.run(
        [sys.executable, "-c", AGENT, running.url],
        input="".join(json.dumps(a) + "\n" for a in asks),
        capture_output=True,
        text=True,
        cwd=running.folder,
        timeout=120,
        check=True,
    )
    result: list[dict[str, object]] = json.loads(done.stdout)
    return result


def cli(running: Running, *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, cwd=running.folder, timeout=60, check=False
    )


def effects(running: Running) -> list[dict[str, object]]:
    path = running.folder / "effects.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def entries_of(folder: Path) -> list[str]:
    conn = sqlite3.connect(folder / "ledger.db")
    try:
        return [str(i) for (i,) in conn.execute("SELECT id FROM entries")]
    finally:
        conn.close()


class Webhook:
    """A webhook in a thread of this process: the events posted to it, in order, the n-th (from 1)
    answered with ``status(n)``; ``None`` holds the answer until the hook closes, then drops the
    connection unanswered (a post the sender never learns the fate of)."""

    def __init__(self, status: Callable[[int], int | None] = lambda _: 204) -> None:
        self.events: list[dict[str, Any]] = []
        self._arrived = threading.Condition()
        self._closing = threading.Event()
        events, arrived, closing = self.events, self._arrived, self._closing

        class Hook(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                answer = status(len(events) + 1)
                if answer is not None:
                    self.send_response(answer)
                    self.end_headers()
                with arrived:
                    events.append(event)
                    arrived.notify_all()
                if answer is None:
                    closing.wait()
                    self.close_connection = True

            def log_message(self, *_: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def wait_for(self, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 30) -> bool:
        with self._arrived:
            return self._arrived.wait_for(lambda: done(self.events), timeout)

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()


def self_signed(folder: Path, *, password: bytes | None = None) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (encrypted under ``password`` if given), as an
    operator would make for a test bed."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "tls.crt", folder / "tls.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    return cert_file, key_file
