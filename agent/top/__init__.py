"""`dockwatch top`: a live terminal view of every container's traffic and connections.

cli.py      options; picks the source and the output
sources.py  Source protocol; --url: a running agent's /metrics → Sample
collect.py  standalone: the one adapter to the agent's inventory and collector → Sample
model.py    pure: two Samples → rates per container; columns, sort, filter
tui.py      the live view (Textual)
plain.py    --once / not a terminal: one plain table, or JSON
"""
