"""Exposition (Prometheus) and log sinks; depends only on the agent models."""
