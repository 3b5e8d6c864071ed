"""``answerable users set-password``: argon2id hashes and sealed keys in a 0600 file; bad input, one line."""

from __future__ import annotations

import base64
import dataclasses
import json
import stat
from pathlib import Path

import pytest
from consoled import VIEWER, console_system, set_password

from answerable.console.accounts import load_accounts, unlock, verify_password
from answerable.errors import ConfigError
from answerable.keys import KeyPair


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    made = tmp_path_factory.mktemp("accounts") / "shop"
    console_system(made)
    return made


def test_the_accounts_file_is_0600_with_argon2id_hashes_and_keys_only_sealed(folder: Path) -> None:
    """Only the owner reads the file; passwords are argon2id hashes; a private key is never there in clear."""
    users = folder / "console-users.json"
    assert stat.S_IMODE(users.stat().st_mode) == 0o600
    text = users.read_text()
    doc = json.loads(text)
    reviewer = KeyPair.load(folder / "reviewer.key")
    entry = doc["users"][reviewer.identity]
    assert entry["password"].startswith("$argon2id$")
    assert (entry["key"]["kdf"], entry["key"]["cipher"]) == ("argon2id", "AES-256-GCM")
    raw = reviewer.private.private_bytes_raw()
    assert base64.b64encode(raw).decode() not in text
    assert raw.hex() not in text
    assert raw not in users.read_bytes()
    assert "reviewer-password-1" not in text
    assert doc["users"][VIEWER]["key"] is None
    account = load_accounts(users)[reviewer.identity]
    assert verify_password(account, "reviewer-password-1")
    assert not verify_password(account, "reviewer-password-2")
    opened = unlock(account, "reviewer-password-1")
    assert opened is not None
    assert opened.public_b64 == reviewer.public_b64
    assert unlock(account, "reviewer-password-2") is None
    # A sealed key whose argon2 parameters are out of argon2's range (a file damaged or edited by
    # hand) opens nothing: argon2's HashingError made the log-in a 500 (found by an audit).
    damages = (
        {"memory_cost": 1},
        {"time_cost": 0},
        {"salt": b""},
        {"parallelism": 0},
        {"memory_cost": 2**32},
    )
    for damage in (*damages, {"time_cost": -1}, {"parallelism": -1}):
        assert account.key is not None
        damaged = dataclasses.replace(account, key=dataclasses.replace(account.key, **damage))
        assert unlock(damaged, "reviewer-password-1") is None, damage


@pytest.mark.parametrize(
    ("identity", "password", "key", "says"),
    [
        ("reviewer", "short", "reviewer.key", "at least 12 characters"),
        ("reviewer", "", "reviewer.key", "first line of standard input"),
        ("nobody@example.org", "a-long-enough-password", None, "neither a person of the charter"),
        ("reviewer", "a-long-enough-password", "ri.key", "belongs to"),
    ],
)
def test_set_password_refuses_bad_input_in_one_line_exit_2(
    folder: Path, identity: str, password: str, key: str | None, says: str
) -> None:
    """A short or empty password, a stranger, another person's key: exit 2, one line, file unchanged."""
    before = (folder / "console-users.json").read_bytes()
    name = KeyPair.load(folder / "reviewer.key").identity if identity == "reviewer" else identity
    done = set_password(folder, name, password, *((key,) if key else ()))
    assert done.returncode == 2, done.stderr
    assert says in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert (folder / "console-users.json").read_bytes() == before


def test_an_accounts_file_others_can_read_is_refused(tmp_path: Path) -> None:
    """A users file open to group or others is not used: one line says how to fix it."""
    users = tmp_path / "users.json"
    users.write_text('{"version": 1, "users": {}}')
    users.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_accounts(users)


def test_a_password_read_from_an_endless_stream_is_refused_not_read_forever(folder: Path) -> None:
    """``< /dev/zero`` was read to its first line end, which it never has: memory grew until the
    kernel killed the process. Reading stops past the longest password the log-in takes."""
    import resource
    import subprocess

    from consoled import CLI

    def capped() -> None:  # were it read whole again, the child fails alone, not the machine
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    before = (folder / "console-users.json").read_bytes()
    name = KeyPair.load(folder / "reviewer.key").identity
    with open("/dev/zero", "rb") as zeros:
        done = subprocess.run(
            [*CLI, "users", "set-password", "answerable.toml", name],
            stdin=zeros,
            capture_output=True,
            text=True,
            cwd=folder,
            timeout=60,
            check=False,
            preexec_fn=capped,
        )
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert (folder / "console-users.json").read_bytes() == before
