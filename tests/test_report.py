"""The incident report: one self-contained page, made from the ledger alone, that changes nothing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any, Literal

import pytest
from rich.console import Console
from typer.testing import CliRunner

from answerable import SQLiteLedger
from answerable.cli import app
from answerable.logistics.demo import storm
from answerable.logistics.world import ScenarioConfig
from answerable.quickstart import run as quickstart
from answerable.records import Approval, ExternalEvent, Record, Review, decode_entry
from answerable.report import _days_between, compare, render, write

runner = CliRunner()
CONFIG = {"days": 3, "stores_per_region": 12, "hospitals_per_region": 3, "orders_per_day": 300}


class Alert(Record):
    """A monitor's alert, as a later module may write it: the report must show it unseen."""

    kind: Literal["Alert"] = "Alert"
    invariant: str
    evidence: dict[str, Any]
    action: str


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small storm, run both ways from one seed, with result.json beside the ledgers."""
    out = tmp_path_factory.mktemp("storm")
    config = ScenarioConfig.model_validate({**CONFIG, "trucks_per_region": 2})
    asyncio.run(storm(5, out, config=config))
    return out


@pytest.fixture(scope="module")
def governed_html(runs: Path) -> str:
    return render(runs / "governed.db")


@pytest.fixture
def copy(runs: Path, tmp_path: Path) -> Path:
    """A private copy of the governed ledger (and its key), safe to append to."""
    for name in ("governed.db", "governed.db.key"):
        shutil.copy(runs / name, tmp_path / name)
    return tmp_path / "governed.db"


def entries(path: Path, kind: str) -> list[Any]:
    with SQLiteLedger.open(path) as ledger:
        return [decode_entry(e.data) for e in ledger.of_kind(kind)]


def text_of(page: str) -> str:
    """The page's visible text, tags dropped and entities kept escaped."""
    return re.sub(r"<[^>]+>", " ", page)


def test_report_is_one_page_with_no_external_references(governed_html: str) -> None:
    """Nothing on the page is fetched from elsewhere: no scripts, stylesheets or remote images."""
    assert governed_html.startswith("<!DOCTYPE html>")
    lowered = governed_html.lower()
    for ref in ('src="http', "src='http", "<link", "<script", "@import", "url(http"):
        assert ref not in lowered, ref


def test_report_shows_the_outcome_table_from_result_json(runs: Path, governed_html: str) -> None:
    """The outcome table holds the figures result.json recorded for this run."""
    metrics = json.loads((runs / "result.json").read_text())["runs"]["governed"]
    assert metrics["reviews_raised"] > 0, "the small storm must send something to review"
    for name in ("actions_executed", "actions_attributed", "reviews_raised", "ledger_entries"):
        assert re.search(_row(name, metrics[name]), governed_html), name
    assert f"{metrics['medical_on_time_rate']:.3f}" in governed_html
    assert f"{metrics['total_cost'] / 100:,.0f}" in governed_html
    assert "≠" not in governed_html, "figures recomputed from the ledger disagree with result.json"


def test_report_falls_back_to_figures_from_the_ledger(copy: Path, runs: Path) -> None:
    """Without result.json, the same figures are recomputed from the ledger alone."""
    metrics = json.loads((runs / "result.json").read_text())["runs"]["governed"]
    page = render(copy)
    assert "figures are recomputed from the ledger" in page
    for name in ("medical_orders", "retail_orders", "actions_executed", "actions_denied", "reviews_approved"):
        assert re.search(_row(name, metrics[name]), page), name
    assert f"{metrics['retail_on_time_rate']:.3f}" in page


def test_report_has_plots_inline(governed_html: str) -> None:
    """On-time, actions, reviews and waiting-time plots are inline SVG."""
    assert governed_html.count("<svg") >= 4
    assert governed_html.count("<svg") == governed_html.count("</svg>")


def test_report_lists_each_review_with_who_answered_and_why(runs: Path, governed_html: str) -> None:
    """One row per Review, carrying the reviewer and their reason."""
    ledger = runs / "governed.db"
    reviews: list[Review] = entries(ledger, "Review")
    approvals: list[Approval] = entries(ledger, "Approval")
    section = governed_html.split("<h2 id=reviews>")[1].split("<h2 ")[0]
    assert section.count("<tr>") == len(reviews) + 1  # and the header
    for approval in approvals:
        assert approval.by in section
        assert text_of(section).count(text_of(_escaped(approval.reason))) >= 1
    verdicts = {a.verdict for a in approvals}
    for verdict in verdicts:
        assert f'<span class="{verdict}">{verdict}</span>' in section


def test_report_shows_the_checkpoint_and_how_to_verify_it(runs: Path, governed_html: str) -> None:
    """The stored checkpoint, the verifier key and the verify command are on the page."""
    with SQLiteLedger.open(runs / "governed.db") as ledger:
        checkpoint, key = ledger.latest_checkpoint(), ledger.verifier_key()
    assert checkpoint is not None
    assert _escaped(checkpoint) in governed_html
    assert _escaped(key) in governed_html
    assert f"answerable verify {runs / 'governed.db'} --checkpoint checkpoint.txt" in governed_html
    assert "it covers the whole ledger" in governed_html


def test_report_without_a_checkpoint_says_how_to_sign_one(tmp_path: Path) -> None:
    """A ledger with no stored checkpoint gets the command that signs one, not a silent gap."""
    path = tmp_path / "plain.db"
    with SQLiteLedger.open(path, create=True) as ledger:
        ledger.append_sync([_event("e1", "webhook", {"n": 1})])
    page = render(path)
    assert "holds no stored checkpoint" in page
    assert f"answerable ledger checkpoint {path} --out checkpoint.txt" in page
    assert "No executed actions in this ledger." in page


@pytest.mark.timeout(60)
def test_entries_dated_centuries_apart_render_only_the_days_that_hold_entries(tmp_path: Path) -> None:
    """Any writer dates its own Message or Event: one from 1970 and one from 2999 must not make the
    per-day plots draw a bar for each of some 376,000 days (the report never finished, at 12 GB)."""
    path = tmp_path / "far.db"
    far = [("e1", "1970-01-01T00:00:00Z"), ("e2", "2026-03-04T07:00:00Z"), ("e3", "2999-01-01T00:00:00Z")]
    with SQLiteLedger.open(path, create=True) as ledger:
        ledger.append_sync([_event(i, "webhook", {"n": 1}).model_copy(update={"at": at}) for i, at in far])
    page = render(path)
    assert "1970-01-01T00:00:00Z" in page
    assert "2999-01-01T00:00:00Z" in page
    assert _days_between("1970-01-01", "2999-01-01", {"1970-01-01", "2026-03-04", "2999-01-01"}) == [
        "1970-01-01",
        "2026-03-04",
        "2999-01-01",
    ]
    assert len(_days_between("2026-01-01", "2026-12-31", set())) == 365  # a year is drawn day by day


def test_ledger_text_is_escaped(copy: Path) -> None:
    """Text from the ledger is shown as text: a payload holding markup cannot inject it."""
    evil = "<script>alert(1)</script>"
    with SQLiteLedger.open(copy) as ledger:
        ledger.append_sync(
            [
                _event("evil-1", "storm.alert", {"region": evil, "day": 1}),
                _event("evil-2", evil, {"note": evil}),
                Alert(
                    id="alert-1",
                    at="2026-03-04T07:00:00Z",
                    invariant=evil,
                    evidence={"why": evil},
                    action="pause",
                ),
            ]
        )
    page = render(copy)
    assert "<script" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 3
    alerts = page.split("<h2 id=alerts>")[1].split("<h3>")[0]
    assert "alert-1" in alerts
    assert "invariant" in alerts
    assert "evidence" in alerts


def test_comparison_page_holds_both_runs_and_links_their_reports(runs: Path) -> None:
    """Both runs side by side, the on-time plot overlaid and the coordination drawn side by side,
    each linked to its report by relative path."""
    write(runs / "governed.db", runs / "governed.html")
    page_path = compare([runs / "ungoverned.db", runs / "governed.db"], runs / "compare.html")
    page = page_path.read_text()
    metrics = json.loads((runs / "result.json").read_text())["runs"]
    header = re.search(r"<thead>.*?</thead>", page)
    assert header is not None
    assert "<th>ungoverned</th><th>governed</th>" in header.group(0)
    row = (
        r"<td><span title=\"actions_executed\">Actions executed</span></td>"
        rf"<td class=\"n\">{metrics['ungoverned']['actions_executed']:,}</td>"
    )
    assert re.search(row + rf"<td class=\"n\">{metrics['governed']['actions_executed']:,}</td>", page)
    assert '<a href="governed.html">governed</a>' in page
    assert '<a href="ungoverned.html">' not in page  # no report written beside it
    assert page.count("<svg") == 2
    assert "<svg" in page.split("<h2>Coordination</h2>", 1)[1]


def test_quickstart_ledger_renders_without_delivery_data(tmp_path: Path) -> None:
    """A ledger from another system renders; sections with nothing to show say so."""
    with (tmp_path / "log.txt").open("w") as log:
        quickstart(tmp_path / "qs", Console(file=log))
    page = render(tmp_path / "qs" / "ledger.db")
    assert "No installed plugin reads this ledger" in page
    assert "no result.json beside the ledger" in page
    assert "<td>halt</td>" in page
    assert "<td>resume</td>" in page
    assert page.count("<svg") >= 2


def test_rendering_leaves_the_ledger_unchanged(runs: Path) -> None:
    """A report only reads: size, root and the file's bytes are the same afterwards."""
    path = runs / "ungoverned.db"
    before = _state(path)
    render(path)
    compare([path], runs / "only.html")
    assert _state(path) == before


def test_a_report_is_never_written_over_its_ledger_or_a_key(tmp_path: Path) -> None:
    """``write`` and ``compare``, called from Python, replaced whatever ``out`` named: the ledger
    itself (aimed at its own path), its signing key, or the RI's key, gone for good. The command
    line refused these; the library now refuses them too, and changes nothing."""
    from answerable import ConfigError

    with (tmp_path / "log.txt").open("w") as log:
        quickstart(tmp_path / "qs", Console(file=log))
    ledger = tmp_path / "qs" / "ledger.db"
    kept = {
        p: p.read_bytes() for p in (ledger, ledger.with_name("ledger.db.key"), tmp_path / "qs" / "ri.key")
    }
    for target, said in (
        (ledger, "is a database"),
        (ledger.with_name("ledger.db.key"), "is the key file of the database beside it"),
        (tmp_path / "qs" / "ri.key", "is a private key file"),
    ):
        with pytest.raises(ConfigError, match=said):
            write(ledger, target)
        with pytest.raises(ConfigError, match=said):
            compare([ledger], target)
    assert {p: p.read_bytes() for p in kept} == kept
    written = write(ledger, tmp_path / "qs" / "ledger.html")
    assert written.read_text().startswith("<!DOCTYPE html>") or "<html" in written.read_text()


def test_rendering_is_deterministic(runs: Path, governed_html: str) -> None:
    """The same ledger renders to the same bytes."""
    assert render(runs / "governed.db") == governed_html


def test_cli_report_writes_the_page(runs: Path, tmp_path: Path) -> None:
    """`answerable report LEDGER --out FILE` exits 0 and writes the page."""
    out = tmp_path / "r" / "governed.html"
    result = runner.invoke(app, ["report", str(runs / "governed.db"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("<!DOCTYPE html>")


def test_cli_report_compare_writes_the_page(runs: Path, tmp_path: Path) -> None:
    """`answerable report-compare LEDGER... --out FILE` exits 0 and writes the page."""
    out = tmp_path / "compare.html"
    args = ["report-compare", str(runs / "ungoverned.db"), str(runs / "governed.db"), "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "governed" in out.read_text()


def test_cli_report_of_a_missing_ledger_exits_2(tmp_path: Path) -> None:
    """A path that is not a ledger is a usage error, named on stderr."""
    result = runner.invoke(app, ["report", str(tmp_path / "nope.db"), "--out", str(tmp_path / "x.html")])
    assert result.exit_code == 2
    assert "not an answerable ledger" in result.stderr
    assert not (tmp_path / "x.html").exists()


def _event(entry_id: str, type_: str, payload: dict[str, Any]) -> ExternalEvent:
    return ExternalEvent(id=entry_id, at="2026-03-04T07:00:00Z", source="test", type=type_, payload=payload)


def _escaped(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def _state(path: Path) -> tuple[int, str, str]:
    with SQLiteLedger.open(path) as ledger:
        size, root = ledger.size(), base64.b64encode(ledger.root()).decode()
    return size, root, hashlib.sha256(path.read_bytes()).hexdigest()


def _row(name: str, value: int) -> str:
    """The outcome table's row for a figure: its label (key as tooltip), then its value."""
    return rf"<td><span title=\"{name}\">[^<]+</span></td><td class=\"n\">{value:,}</td>"


async def test_a_topic_an_agent_chose_is_drawn_as_written_not_read_as_mathematics(tmp_path: Path):
    """matplotlib read a ``$`` pair in a label as mathematics and failed at savefig on what it could
    not parse: a message topic ``$\\foo$`` (refused, and recorded all the same) made every report of
    the ledger fail for good, and `answerable report` print a traceback (found by an audit)."""
    from support import POLICIES, SCHEMA
    from test_coordination import AGENTS, RI, Heard, charter

    from answerable import FakeClock, Gateway, IdSource, MessageRefused, System, new_ruleset

    db = tmp_path / "run.db"
    clock = FakeClock()
    ids = IdSource(clock)
    ledger = SQLiteLedger.open(db, create=True)
    gateway = Gateway(ledger, clock=clock, ids=ids)
    gateway.register("noop", lambda: None, resource_class="bench")
    await gateway.install(charter(), new_ruleset(POLICIES, SCHEMA, RI, clock=clock, ids=ids))
    system = System(ledger, gateway, agents=AGENTS, clock=clock, ids=ids)
    for name in AGENTS:
        system.add(Heard(name))
    for topic in (r"$\foo$", "$x^{$"):
        with pytest.raises(MessageRefused):
            await system.send("router", topic, "t", {}, (), (), "trace")
    gateway.close()
    ledger.close()
    page = render(db)
    assert r"$\foo$" in page
    result = CliRunner().invoke(app, ["report", str(db), "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output


def test_a_plot_drawn_in_another_thread_still_draws_labels_as_written():
    """matplotlib's settings are the process's, and the console draws reports in worker threads:
    one plot ending its drawing put mathematics back on under another mid-draw, and a `$` topic
    failed it again (found by a review). Plots are drawn one at a time."""
    import io
    import threading

    from answerable.report import _plain_text

    a_in, a_go, b_in, b_go = (threading.Event() for _ in range(4))
    errors: list[BaseException] = []

    @_plain_text
    def plot_a() -> str | None:
        a_in.set()
        a_go.wait(10)
        return None

    @_plain_text
    def plot_b() -> str | None:
        from matplotlib.figure import Figure

        b_in.set()
        b_go.wait(10)
        fig = Figure()
        fig.add_subplot().set_yticks([0], labels=[r"$\foo$"])  # an agent's topic
        fig.savefig(io.StringIO(), format="svg")
        return None

    def run(plot: Any) -> None:
        try:
            plot()
        except Exception as exc:
            errors.append(exc)

    first = threading.Thread(target=run, args=(plot_a,))
    first.start()
    assert a_in.wait(10)
    second = threading.Thread(target=run, args=(plot_b,))
    second.start()
    b_in.wait(0.5)  # the second plot starts drawing now, or (one at a time) once the first is done
    a_go.set()
    first.join()
    assert b_in.wait(10)
    b_go.set()
    second.join()
    assert not errors, errors
