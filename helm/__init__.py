"""weir's helm controller."""
