"""The core knows no domain: logistics plugs in, never the reverse (read from the source)."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "src" / "answerable"
DOMAIN = re.compile(
    r"\b(medical|retail|hospitals?|shipments?|carrier|warehouses?|penalties|total_cost|storm desk)\b"
    r"|orders\.batch|_orders\b|\"delivery\"|\"margin\"|logistics\.(?!example)",
    re.IGNORECASE,
)
"""The logistics world's classes, payload fields and metrics, as a core module would name them."""


def test_no_module_outside_logistics_names_a_logistics_class_payload_field_or_metric() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "logistics" in path.relative_to(PACKAGE).parts:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if DOMAIN.search(line):
                found.append(f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)


def test_the_check_would_see_a_leak() -> None:
    assert DOMAIN.search('_CLASSES = {"H": "medical", "S": "retail"}')
    assert DOMAIN.search('if record.type == "orders.batch":')
    assert DOMAIN.search('out[f"{cls}_orders"] = total')
    assert not DOMAIN.search("margin:0 auto; the ledger's origin, logistics.example/storm")
