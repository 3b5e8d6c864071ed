"""The storm's incident report as a person sees it: in a real browser (Debian's chromium through
Playwright), on a laptop screen 1280 px wide, nothing runs off the page and nothing reads as Python."""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from answerable.logistics.demo import storm
from answerable.report import compare, write

pytestmark = [pytest.mark.slow, pytest.mark.full]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("storm")
    asyncio.run(storm(7, out, modes=("ungoverned", "governed")))
    made = {mode: write(out / f"{mode}.db", out / f"{mode}.html") for mode in ("ungoverned", "governed")}
    made["compare"] = compare([out / "ungoverned.db", out / "governed.db"], out / "compare.html")
    return made


def test_every_page_fits_1280_px_and_reads_as_prose_not_python(pages: dict[str, Path]) -> None:
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            for name, path in pages.items():
                page.goto(path.as_uri())
                overflow = page.evaluate(
                    "() => [document.documentElement.scrollWidth,"
                    " [...document.querySelectorAll('table, pre, figure, p, dl')]"
                    "  .filter(e => e.getBoundingClientRect().right > 1280).length]"
                )
                assert overflow == [1280, 0], (name, overflow)
                text = page.inner_text("body")
                for python in ("None", "True", "False", "{'", "('", "_on_time_rate"):
                    assert python not in text, (name, python)
        finally:
            browser.close()


def test_the_report_opens_with_a_conclusion_and_marks_the_storm_days(pages: dict[str, Path]) -> None:
    governed = pages["governed"].read_text()
    conclusion = re.search(r'<p class="conclusion">(.*?)</p>', governed)
    assert conclusion is not None
    said = conclusion.group(1)
    assert "all attributed to the RI ri@logistics.example" in said
    assert re.search(r"medical \d\.\d{3} against 0\.\d{3} ungoverned", said), said
    assert "every answer by a simulated reviewer" in said
    ungoverned = pages["ungoverned"].read_text()
    assert "none attributed to anyone: the ledger has no charter" in ungoverned
    # each time plot shades the storm's days (the outside alerts) and says so in its legend: on
    # time, actions, timeline, and for the governed run reviews per day and their waits too
    assert ungoverned.count("outside alert that day") == 3
    assert governed.count("outside alert that day") == 5


def test_every_figure_of_result_json_is_recomputed_from_the_ledger_and_the_partners_records(
    pages: dict[str, Path],
) -> None:
    """The report recomputes what result.json says, from the ledger and the carrier's and
    warehouse's own records; only what a model alone knows is taken on trust, and it says so."""
    import json

    from answerable.report import _gather

    model_only = {
        "wall_seconds", "reviewer_hours", "answers_against_guidance", "reviewers", "first_alert",
        "medical_late_before_alert", "medical_late_after_alert", "total_cost_change_pct", "margin_change_pct",
    }  # fmt: skip
    for mode in ("ungoverned", "governed"):
        ledger = pages[mode].with_suffix(".db")
        claimed = json.loads(ledger.with_name("result.json").read_text())["runs"][mode]
        assert claimed.pop("ledger") == str(ledger)  # where the run is, not a figure of it
        recomputed = _gather(ledger).derived
        missing = sorted(set(claimed) - set(recomputed) - model_only)
        assert not missing, (mode, missing)
        differ = {
            k: (claimed[k], recomputed[k]) for k in claimed if k in recomputed and claimed[k] != recomputed[k]
        }
        assert not differ, (mode, differ)
        assert " ≠" not in pages[mode].read_text()


def test_the_pages_show_how_the_agents_coordinated_day_by_day(pages: dict[str, Path]) -> None:
    """Each report draws its messages per channel per day; the comparison draws the runs side by side."""
    governed, ungoverned = pages["governed"].read_text(), pages["ungoverned"].read_text()
    assert "under the charter&#x27;s coordination contract" in governed
    assert "with no coordination contract" in ungoverned
    for page in (governed, ungoverned):
        section = page.split("<h3>Coordination</h3>", 1)[1]
        assert section.lstrip().startswith("<p>")
        assert "router → routes / route.plan" in section.split("</figure>", 1)[0]
    compare_page = pages["compare"].read_text()
    section = compare_page.split("<h2>Coordination</h2>", 1)[1]
    assert "<svg" in section
    assert ">ungoverned</text>" in section  # one panel per run, titled with its name
    assert ">governed</text>" in section
