"""weir's image-automation controller."""
