"""Thin Engine API client over the unix socket, typed models, pure stream decoders."""
