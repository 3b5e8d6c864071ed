"""The ledger published as C2SP tlog-tiles, audited by an independent implementation (Go's
golang.org/x/mod/sumdb/tlog, tests/tlogcheck), not by the code that wrote it."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import order_events, tlog_audit
from typer.testing import CliRunner

from answerable import SQLiteLedger
from answerable.cli import app
from answerable.clock import IdSource
from answerable.errors import ConfigError
from answerable.ledger.tiles import entry_bundle, publish, tile_path

ORIGIN = "tiles.example/log"


@pytest.mark.parametrize(
    ("level", "index", "width", "path"),
    [
        (0, 0, 256, "tile/0/000"),
        (0, 7, 256, "tile/0/007"),
        (1, 1000, 256, "tile/1/x001/000"),
        (2, 1234067, 256, "tile/2/x001/x234/067"),
        (0, 3, 5, "tile/0/003.p/5"),
        ("entries", 1234067, 255, "tile/entries/x001/x234/067.p/255"),
    ],
)
def test_tile_paths_follow_the_spec(level: int | str, index: int, width: int, path: str) -> None:
    assert tile_path(level, index, width) == path


def test_an_entry_bundle_is_uint16_length_prefixed() -> None:
    assert entry_bundle([b"ab", b"", b"c" * 300]) == b"\x00\x02ab\x00\x00\x01\x2c" + b"c" * 300
    with pytest.raises(ConfigError, match="does not fit"):
        entry_bundle([b"x" * 65_536])


async def fill(store: SQLiteLedger, ids: IdSource, n: int) -> None:
    for start in range(0, n, 2_000):
        await store.append(order_events(min(2_000, n - start), ids))


def files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_ino for p in sorted(folder.rglob("*")) if p.is_file()}


async def test_a_log_of_three_tile_levels_audits_with_go(
    store: SQLiteLedger, ids: IdSource, tmp_path: Path, tlogcheck: Path
) -> None:
    """65,800 entries: full and partial tiles at levels 0 and 1, a partial one at level 2."""
    await fill(store, ids, 65_800)
    out = tmp_path / "log"
    done = publish(store, out)
    assert done.size == 65_800
    names = files(out)
    assert "tile/0/257" not in names
    assert {
        "tile/0/000",
        "tile/0/255",
        "tile/0/257.p/8",
        "tile/1/000",
        "tile/1/001.p/1",
        "tile/2/000.p/1",
    } <= set(names)
    assert "tile/entries/257.p/8" in names
    report = tlog_audit(tlogcheck, out, store.verifier_key())
    assert report.split()[1] == "65800"


async def test_publishing_again_writes_only_the_right_edge(
    store: SQLiteLedger, ids: IdSource, tmp_path: Path, tlogcheck: Path
) -> None:
    await fill(store, ids, 300)
    out = tmp_path / "log"
    publish(store, out)
    first = files(out)
    assert "tile/0/001.p/44" in first
    await fill(store, ids, 230)  # 530: tile 1 fills up, tile 2 starts
    again = publish(store, out)
    second = files(out)
    assert second["tile/0/000"] == first["tile/0/000"]  # a full tile is never rewritten
    assert "tile/0/001.p/44" not in second
    assert "tile/0/001" in second
    assert "tile/entries/001.p/44" not in second
    assert "tile/entries/001" in second
    assert "tile/0/002.p/18" in second
    assert again.removed >= 2
    assert not [n for n in second if ".tmp-" in n]
    assert tlog_audit(tlogcheck, out, store.verifier_key()).split()[1] == "530"


async def test_hashes_only_publishes_no_entries(
    store: SQLiteLedger, ids: IdSource, tmp_path: Path, tlogcheck: Path
) -> None:
    await fill(store, ids, 40)
    out = tmp_path / "log"
    assert publish(store, out, hashes_only=True).entries is False
    assert not (out / "tile" / "entries").exists()
    tlog_audit(tlogcheck, out, store.verifier_key(), hashes_only=True)


@pytest.mark.parametrize("target", ["tile/0/001.p/44", "tile/entries/000", "checkpoint"])
async def test_the_auditor_catches_a_changed_byte(
    store: SQLiteLedger, ids: IdSource, tmp_path: Path, tlogcheck: Path, target: str
) -> None:
    """The Go auditor is not a rubber stamp: one flipped byte anywhere is refused."""
    await fill(store, ids, 300)
    out = tmp_path / "log"
    publish(store, out)
    data = bytearray((out / target).read_bytes())
    data[len(data) // 3] ^= 0x01
    (out / target).write_bytes(bytes(data))
    with pytest.raises(AssertionError, match="tlogcheck refused"):
        tlog_audit(tlogcheck, out, store.verifier_key())


async def test_the_cli_publishes_and_refuses_a_file_as_folder(
    store: SQLiteLedger, ids: IdSource, path: Path, tmp_path: Path, tlogcheck: Path
) -> None:
    await fill(store, ids, 10)
    runner = CliRunner()
    out = tmp_path / "pub"
    result = runner.invoke(app, ["ledger", "publish", str(path), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert '"size":10' in result.stdout
    tlog_audit(tlogcheck, out, store.verifier_key())
    a_file = tmp_path / "file"
    a_file.write_text("x")
    refused = runner.invoke(app, ["ledger", "publish", str(path), "--out", str(a_file)])
    assert refused.exit_code == 2
    assert "is a file" in refused.stderr


async def test_partial_tiles_of_earlier_checkpoints_stay_until_the_full_tile_exists(
    store: SQLiteLedger, ids: IdSource, tmp_path: Path, tlogcheck: Path
) -> None:
    """c2sp.org/tlog-tiles: partial tiles must be served for every checkpoint produced."""
    out = tmp_path / "log"
    await fill(store, ids, 10)
    publish(store, out)
    old_checkpoint = (out / "checkpoint").read_text()
    await fill(store, ids, 10)
    publish(store, out)
    names = set(files(out))
    assert {"tile/0/000.p/10", "tile/0/000.p/20", "tile/entries/000.p/10", "tile/entries/000.p/20"} <= names
    (out / "checkpoint").write_text(old_checkpoint)  # a client still holding the older checkpoint
    assert tlog_audit(tlogcheck, out, store.verifier_key()).split()[1] == "10"


@pytest.mark.parametrize(
    ("index", "width", "level"),
    [(0, 256, 0), (0, 7, "entries"), (1234067, 256, 1), (1234067, 255, "entries"), (999, 1, 2)],
)
def test_a_tile_path_parses_back(index: int, width: int, level: int | str) -> None:
    from answerable.ledger.tiles import parse_tile_path

    assert parse_tile_path(tile_path(level, index, width)) == (str(level), index, width)


@pytest.mark.parametrize(
    "path",
    ["tile/0/1", "tile/0/0001", "tile/0/x000/001", "tile/entries/000.p/0", "tile/entries/000.p/256",
     "tile/0/000.p/x", "tile/0", "checkpoint", "tile/0/x001"],
)  # fmt: skip
def test_what_is_not_a_tile_path_is_none(path: str) -> None:
    from answerable.ledger.tiles import parse_tile_path

    assert parse_tile_path(path) is None


def test_an_atomic_write_to_a_fifo_or_device_writes_to_it_and_leaves_it_there(tmp_path: Path) -> None:
    """Renaming a finished file over the target put a regular file where a device was: run as
    root, ``charter amend --out /dev/null --force`` replaced the machine's /dev/null (and every
    PostgreSQL initdb after it failed). A FIFO stands in for the device here."""
    import os
    import stat

    from answerable.ledger.tiles import write_atomically

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="No such device"):  # nobody reads it: refused at once
        write_atomically(fifo, b"lost\n")
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader, open before the write
    try:
        write_atomically(fifo, b"cosigned\n")
        assert os.read(reader, 100) == b"cosigned\n"
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo"]


PUBLISHER = """
import sys, time
from pathlib import Path
from answerable.clock import IdSource, SystemClock, rfc3339
from answerable.ledger import open_ledger
from answerable.ledger.tiles import publish
from answerable.records import ExternalEvent
ledger, out = open_ledger(sys.argv[1]), Path(sys.argv[2])
writes, until = sys.argv[3] == "1", float(sys.argv[4])
ids = IdSource(SystemClock())
while time.time() < until:
    if writes:
        at = rfc3339(time.time_ns())
        made = [ExternalEvent(id=ids.new(), at=at, source="s", type="t", payload={}) for _ in range(7)]
        ledger.append_sync(made)
    publish(ledger, out)
"""


def test_publishers_in_three_processes_never_move_the_checkpoint_back(tmp_path: Path) -> None:
    """`answerable ledger publish` beside a service publishing into the same folder: the
    checkpoint went back (35 then 28) 92 times in 8 s, and a publisher failed removing a partial
    tile another had removed. Publishers now take turns on a lock of the folder, signing inside it."""
    import itertools
    import subprocess
    import sys
    import time

    from answerable.ledger import open_ledger

    path, out = tmp_path / "l.db", tmp_path / "pub"
    open_ledger(path, create=True, origin="test.example/publish").close()
    until = time.time() + 3
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PUBLISHER, str(path), str(out), writes, str(until)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for writes in ("1", "0", "0")
    ]
    sizes = []
    while time.time() < until:
        try:
            sizes.append(int((out / "checkpoint").read_text().split("\n")[1]))
        except (FileNotFoundError, IndexError):
            continue
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    backs = [(a, b) for a, b in itertools.pairwise(sizes) if b < a]
    assert len(set(sizes)) > 3, sizes[-5:]  # it grew while we looked
    assert backs == [], backs[:5]


async def test_a_cosigned_checkpoint_put_back_keeps_the_cosignatures_of_the_same_tree(
    store: SQLiteLedger, ids: IdSource, tmp_path: Path
) -> None:
    """Put back after a witness's round trip, the checkpoint replaced one of the same tree that
    another publisher had had cosigned meanwhile, and its cosignatures were lost (found by an
    independent review). Now a signature by a key ours lacks (name and key ID: a witness's
    rotated key is another) is kept, up to the note's limit of lines; ours stand for the rest;
    a folder note that does not parse is replaced whole. A note that is no checkpoint is refused
    by name (it raised a bare IndexError, or ValueError for a size of 5,000 digits)."""
    import base64

    from answerable.ledger.note import MAX_SIGNATURES
    from answerable.ledger.tiles import republish_checkpoint

    await fill(store, ids, 10)
    out = tmp_path / "log"
    signed = publish(store, out).note

    def line(name: str, key: bytes, sig: bytes) -> str:
        return f"\u2014 {name} {base64.b64encode(key * 4 + sig * 64).decode()}\n"

    mine, stale = line("witness-a", b"a", b"a"), line("witness-a", b"a", b"0")
    rotated, other = line("witness-a", b"r", b"r"), line("witness-b", b"b", b"b")
    (out / "checkpoint").write_text(signed + other + stale + rotated)
    assert republish_checkpoint(out, signed + mine)
    assert (out / "checkpoint").read_text() == signed + mine + other + rotated

    many = "".join(
        line(f"w{n}", bytes([n]), b"x") for n in range(MAX_SIGNATURES - 1)
    )  # with the log's own: 100
    (out / "checkpoint").write_text(signed + many)
    assert republish_checkpoint(out, signed + mine)
    assert (out / "checkpoint").read_text().count("\u2014 ") == MAX_SIGNATURES

    (out / "checkpoint").write_text(signed + "\u2014 w !!!notbase64\n" + other)
    assert republish_checkpoint(out, signed + mine)
    assert (out / "checkpoint").read_text() == signed + mine

    for bad in ("no note", "origin\n" + "9" * 5000 + "\nroot\n"):
        with pytest.raises(ConfigError, match="not a checkpoint note"):
            republish_checkpoint(out, bad)
    (out / "checkpoint").write_text("origin\n" + "9" * 5000 + "\nroot\n")
    assert republish_checkpoint(out, signed + mine)  # a folder note past reading: ours takes its place
