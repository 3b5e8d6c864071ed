"""A nats-server of a test's own (Debian's 2.9, JetStream on), for what the shared one must not
suffer: being killed, or configured with logins."""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import nats
from nats.js.errors import NotFoundError

from answerable.bus.nats import stream_name

SHARED = "nats://127.0.0.1:4222"
"""The machine's own nats-server, which every test shares (each with streams of its own)."""


async def stream_there(system: str, url: str = SHARED) -> bool:
    """Whether the server at ``url`` holds ``system``'s stream."""
    connection = await nats.connect(url)
    try:
        await connection.jetstream().stream_info(stream_name(system))
    except NotFoundError:
        return False
    finally:
        await connection.close()
    return True


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class NatsServer:
    folder: Path
    port: int
    extra: str = ""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        """Start (again: the same port and JetStream store) and return once it listens."""
        conf = self.folder / "nats.conf"
        conf.write_text(
            f'listen: "127.0.0.1:{self.port}"\njetstream {{ store_dir: "{self.folder / "js"}" }}\n'
            + self.extra
        )
        self.proc = subprocess.Popen(
            ["nats-server", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        while True:  # each try is a refused connect until it listens: no sleep needed
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            if self.proc.poll() is not None:
                said = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise AssertionError(f"nats-server exited {self.proc.returncode}: {said}")

    def kill(self) -> None:
        """kill -9: no goodbye to any client."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self._close()

    def _close(self) -> None:
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
