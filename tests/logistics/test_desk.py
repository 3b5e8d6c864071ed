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
