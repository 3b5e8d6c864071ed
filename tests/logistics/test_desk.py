"""The modelled desk's settings are checked before anything runs: one precise line naming the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from answerable.cli import app
from answerable.errors import ConfigError
from answerable.logistics.desk import DEFAULT_DESK
from answerable.logistics.world import load_scenario


def desk(**change: object) -> dict[str, object]:
    doc = DEFAULT_DESK.model_dump(mode="json")
    reviewer = {**doc["reviewers"][0], **{k: v for k, v in change.items() if k != "guidance"}}
    return {"reviewers": [reviewer], "guidance": change.get("guidance", doc["guidance"])}


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"reviews_per_hour": -3}, "reviews_per_hour"),
        ({"error_rate": 1.5}, "error_rate"),
        ({"answer_minutes_median": 0}, "answer_minutes_median"),
        ({"shift_start_hour": 18, "shift_end_hour": 6}, "shift_end_hour"),
        ({"guidance": []}, "guidance"),
        ({"guidance": [{"when": {"hospital_stock": 3}, "verdict": "deny", "why": "x"}]}, "hospital_stock"),
        (
            {"guidance": [{"when": {"cover_days": 3}, "verdict": "deny", "why": "x"}]},
            "name it 'cover_days_at_least'",
        ),
        (
            {
                "guidance": [
                    {
                        "when": {"operation": "carrier.book", "time_critical": True},
                        "verdict": "deny",
                        "why": "x",
                    }
                ]
            },
            "could never match",
        ),
        (
            {"guidance": [{"when": {"cover_days_at_least": -1}, "verdict": "deny", "why": "x"}]},
            "cover_days_at_least",
        ),
        (
            {"guidance": [{"when": {"cover_days_at_least": True}, "verdict": "deny", "why": "x"}]},
            "cover_days_at_least",
        ),
        ({"guidance": [{"when": {"time_critical": "yes"}, "verdict": "deny", "why": "x"}]}, "time_critical"),
        ({"guidance": [{"when": {}, "verdict": "maybe", "why": "x"}]}, "verdict"),
        ({"guidance": [{"when": {}, "verdict": "deny", "why": ""}]}, "why"),
    ],
)
def test_bad_desk_settings_name_the_field(change: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_scenario(json.dumps({"desk": desk(**change)}), source="storm.json")
    message = str(refused.value)
    assert message.startswith("storm.json: desk.")
    assert named in message
    assert "\n" not in message


def test_a_bad_desk_in_a_scenario_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    scenario = tmp_path / "storm.json"
    scenario.write_text(json.dumps({"desk": desk(error_rate=2)}))
    result = CliRunner().invoke(
        app, ["demo", "storm", "--scenario", str(scenario), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert "error_rate" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_reviewers_work_in_parallel_within_their_capacity_and_shifts() -> None:
    """Two reviewers free at 06:00 both start at once; the third review waits for the first free
    one, by capacity (2 an hour: 30 minutes apart); a review after every shift waits for the
    next morning's."""
    from answerable.clock import FakeClock
    from answerable.logistics.desk import DeskConfig, GuidanceRule, ModelledDesk, ModelledReviewer

    def reviewer(name: str) -> ModelledReviewer:
        return ModelledReviewer(
            name=name, shift_start_hour=5, shift_end_hour=13, reviews_per_hour=2,
            answer_minutes_median=1, answer_minutes_sigma=0, error_rate=0,
        )  # fmt: skip

    six = 1_772_431_200_000_000_000  # 2026-03-02T06:00:00Z
    config = DeskConfig(
        reviewers=(reviewer("a@x"), reviewer("b@x")),
        guidance=(GuidanceRule(when={}, verdict="approve", why="ok"),),
    )
    desk = ModelledDesk(None, FakeClock(ns=six + 3_600_000_000_000), config, 0)  # type: ignore[arg-type]
    starts = []
    for _ in range(3):
        seat, start = desk._seat(six)
        seat.free_ns = start + 30 * 60_000_000_000  # what answering does: capacity 2 an hour
        starts.append((seat.reviewer.name, (start - six) // 60_000_000_000))
    assert starts == [("a@x", 0), ("b@x", 0), ("a@x", 30)]  # not held back by the clock (07:00)
    _, next_morning = desk._seat(six + 8 * 3_600_000_000_000)  # 14:00, after both shifts
    assert (next_morning - six) // 3_600_000_000_000 == 23  # 05:00 the next day
