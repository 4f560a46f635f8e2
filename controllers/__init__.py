"""The shared controller runtime.

API client, informers, work queue, the reconcile loop, status patches, events, metrics,
leader election and the process entry point. It imports no controller package.
"""
