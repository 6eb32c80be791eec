"""`python -m agent` is the same as the `dockwatch` command."""

from agent.cli import main

raise SystemExit(main())
