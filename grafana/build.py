"""Build dockwatch's Grafana dashboards as plain dicts and write them to grafana/dashboards/*.json.

    python grafana/build.py           rewrite the JSON (sorted keys, trailing newline)
    python grafana/build.py --check   exit 1 if the committed JSON differs from what this file builds

One module per dashboard (the table below), over queries.py (selectors, PromQL helpers) and
panels.py (panels, variables, layout); every metric a query names is one that
exporters/prometheus/names.py declares, taken from there.

Every per-namespace series is already reported once, by the namespace's owner (names.py), so
panels sum those series directly; the only join with dockwatch_container_info (container detail,
"namespace traffic") first collapses info to one series per (node, netns_owner), so it cannot
multiply a shared namespace. Self metrics carry no `node` label: they are filtered by node through
dockwatch_build_info, one series per scrape target.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"

if not __package__:
    # Run as a script (or imported as `grafana.build` by the tests): import `grafana` and `exporters`
    # from the repository, and nothing from grafana/ by bare name.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    if str(HERE.parent) not in sys.path:
        sys.path.insert(0, str(HERE.parent))

from grafana import agent_and_logs, connections, container, events, networking, traffic  # noqa: E402
from grafana.panels import DATASOURCE_UID, Json  # noqa: E402
from grafana.queries import STANDALONE  # noqa: E402

__all__ = ["DASHBOARDS", "DATASOURCE_UID", "STANDALONE", "main", "render_all"]

# File name -> builder. A new dashboard: its module, a line here, and (swarm) a config entry in
# deploy/stack.yaml.
DASHBOARDS: dict[str, Callable[[], Json]] = {
    "traffic.json": traffic.build,
    "container.json": container.build,
    "connections.json": connections.build,
    "events.json": events.build,
    "agent.json": agent_and_logs.build,
    "networks.json": networking.networks,
    "service-map.json": networking.service_map,
}


def render_all() -> dict[str, str]:
    """File name -> exact file text."""
    return {name: json.dumps(fn(), indent=2, sort_keys=True) + "\n" for name, fn in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the JSON on disk differs")
    ap.add_argument("--dir", type=Path, default=OUT, help="dashboards directory (default: %(default)s)")
    args = ap.parse_args(argv)
    rendered = render_all()
    out: Path = args.dir
    if args.check:
        on_disk = {p.name for p in out.glob("*.json")}
        stale = sorted(on_disk - set(rendered))
        differ = sorted(
            n for n, text in rendered.items() if not (out / n).is_file() or (out / n).read_text() != text
        )
        for n in differ:
            print(f"{out / n}: differs from grafana/build.py; run python grafana/build.py", file=sys.stderr)
        for n in stale:
            print(f"{out / n}: not built by grafana/build.py", file=sys.stderr)
        return 1 if differ or stale else 0
    out.mkdir(parents=True, exist_ok=True)
    for n, text in rendered.items():
        (out / n).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
