"""CI check: every dashboard round-trips through grafana-foundation-sdk's Grafana 11.6 models
(typed panel options, field config and Prometheus queries) without losing a field.

The SDK decodes each known field into its schema types and drops anything else, so a field it
loses is one Grafana 11.6's schema does not have (a typo, a removed option, a misplaced key). The
only exceptions are fields Grafana writes itself by default, listed with why.

The SDK is pinned to its Grafana 11.6 build in pyproject's test extra: `1769699379!11.6.0` (an
unpinned install picks the 10.1 build, whose version epoch is higher).
"""

from __future__ import annotations

import json
import re
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

sdk_dashboard = pytest.importorskip(
    "grafana_foundation_sdk.models.dashboard", reason="pip install '.[test]' (grafana-foundation-sdk)"
)
from grafana_foundation_sdk.cog.encoder import JSONEncoder  # noqa: E402
from grafana_foundation_sdk.cog.plugins import register_default_plugins  # noqa: E402

DASHBOARDS = Path(__file__).resolve().parents[2] / "grafana" / "dashboards"
PINNED = "1769699379!11.6.0"
# Paths (list indexes as []) that may be lost, and why: Grafana fills them itself.
GRAFANA_FILLS = {
    # The variable editor writes `definition` (the query as text, for the variables list) on every
    # save; the 11.6 schema keeps only `query`, from which Grafana renders it again.
    "/templating/list[]/definition": "written by Grafana's variable editor from `query`",
}

register_default_plugins()  # typed options/fieldConfig per panel type, typed Prometheus queries


def lost(before: Any, after: Any, path: str = "") -> list[str]:
    """Paths present in `before` and missing or different in `after` (fields the SDK added are fine)."""
    out: list[str] = []
    if isinstance(before, dict) and isinstance(after, dict):
        for k, v in before.items():
            if k not in after:
                out.append(f"{path}/{k}")
            else:
                out += lost(v, after[k], f"{path}/{k}")
    elif isinstance(before, list) and isinstance(after, list):
        if len(before) != len(after):
            return [f"{path} (length {len(before)} -> {len(after)})"]
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            out += lost(b, a, f"{path}[{i}]")
    elif before != after:
        out.append(f"{path} ({before!r} -> {after!r})")
    return out


def round_trip(dash: dict[str, Any]) -> dict[str, Any]:
    model = sdk_dashboard.Dashboard.from_json(dash)
    return dict(json.loads(json.dumps(model, cls=JSONEncoder)))


def test_the_sdk_is_the_grafana_11_6_build() -> None:
    assert metadata.version("grafana-foundation-sdk") == PINNED


@pytest.mark.parametrize("path", sorted(DASHBOARDS.glob("*.json")), ids=lambda p: p.name)
def test_dashboard_round_trips_without_losing_fields(path: Path) -> None:
    dash = json.loads(path.read_text())
    missing = [p for p in lost(dash, round_trip(dash)) if re.sub(r"\[\d+\]", "[]", p) not in GRAFANA_FILLS]
    assert not missing, f"{path.name}: fields the Grafana 11.6 schema does not keep:\n" + "\n".join(missing)


def test_the_check_catches_a_field_grafana_does_not_know() -> None:
    dash = json.loads((DASHBOARDS / "traffic.json").read_text())
    panel = next(p for p in dash["panels"] if p["type"] == "timeseries")
    panel["options"]["legend"]["placment"] = "right"  # a typo of placement
    panel["targets"][0]["legendFromat"] = "x"
    panel["fieldConfig"]["defaults"]["custom"]["fillOpactiy"] = 5
    got = lost(dash, round_trip(dash))
    assert any(p.endswith("/options/legend/placment") for p in got), got
    assert any(p.endswith("/legendFromat") for p in got), got
    assert any(p.endswith("/custom/fillOpactiy") for p in got), got
