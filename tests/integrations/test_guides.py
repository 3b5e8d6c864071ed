"""Each integration guide's complete example runs as written against a real service."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from ledger_view import recorded, refunds_paid
from served import Running

pytestmark = pytest.mark.slow
DOCS = Path(__file__).parents[2] / "docs"
EXAMPLE = re.compile(r"^```python example\n(.*?)^```", re.S | re.M)


def example_of(guide: str) -> str:
    [code] = EXAMPLE.findall((DOCS / guide).read_text())
    return str(code)


@pytest.mark.parametrize(
    ("guide", "orders"), [("openai-agents.md", ("O-7", "O-8")), ("langgraph.md", ("O-9", "O-10"))]
)
def test_the_guides_example_runs_governed_and_its_approval_is_recorded(
    shop: Running, tmp_path: Path, guide: str, orders: tuple[str, str]
) -> None:
    """The example prints its review and the model's last word; each refund ran once, the large
    one after the reviewer's recorded approval."""
    script = tmp_path / "example.py"
    script.write_text(example_of(guide))
    ran = subprocess.run(
        [sys.executable, str(script), shop.url],
        cwd=shop.folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip().endswith("Both refunds are done."), ran.stdout
    small, large = orders
    assert f"'order': '{large}'" in ran.stdout
    paid = [r["order"] for r in refunds_paid(shop.folder)]
    assert (paid.count(small), paid.count(large)) == (1, 1)
    reasons = [a["reason"] for a in recorded(shop.folder, "Approval")]
    assert f"{large} matches the returned goods" in reasons
