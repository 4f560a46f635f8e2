"""weir's source controller."""
