"""weir's notification controller."""
