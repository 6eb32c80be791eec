"""Log pipeline: the record type, sources, delivery with checkpoints."""
