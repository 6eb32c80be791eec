"""dockwatch's Grafana dashboards, built from Python: `python grafana/build.py [--check]`."""
