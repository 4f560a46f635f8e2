"""Developer scripts: ``python hack/<script>.py``."""
