"""README's generated tables match the code (update: python3 -m tests.unit.test_readme --update)."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

from agent import config
from agent.top import cli as top_cli
from exporters.prometheus import names

README = Path(__file__).resolve().parents[2] / "README.md"
SECTIONS = {"metrics": names.markdown_table, "config": config.markdown_table, "top": top_cli.markdown_table}


def render(text: str) -> str:
    for tag, make in SECTIONS.items():

        def section(_m: re.Match[str], t: str = tag, f: Callable[[], str] = make) -> str:
            return f"<!-- {t}:begin -->\n{f()}\n<!-- {t}:end -->"

        text = re.sub(
            rf"<!-- {tag}:begin -->.*?<!-- {tag}:end -->",
            section,
            text,
            flags=re.S,
        )
    return text


def test_readme_tables_are_current() -> None:
    text = README.read_text()
    assert render(text) == text, "README tables are stale: python3 -m tests.unit.test_readme --update"


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one() -> None:
    text = README.read_text()
    assert "pip install . && dockwatch run" in text
    assert "bash tests/run.sh" in text
    assert "tests/run.sh" in (README.parent / ".ci" / "run").read_text()


if __name__ == "__main__" and sys.argv[1:] == ["--update"]:
    README.write_text(render(README.read_text()))
