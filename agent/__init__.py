"""dockwatch: per-container network, connection and log agent."""

__version__ = "0.1.0"
