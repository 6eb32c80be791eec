"""Prometheus exposition: metric names, collectors, HTTP server."""
