"""Real protocol peers the integration tests talk to."""
