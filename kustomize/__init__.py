"""weir's kustomize controller."""
