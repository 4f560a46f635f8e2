"""The per-object annotations (or labels) that change how an object is applied and pruned.

Values are compared case-insensitively, as Flux does:

- ``kustomize.toolkit.fluxcd.io/ssa``: ``Override`` (the default), ``Merge`` (no takeover of
  fields other managers own), ``IfNotPresent`` (create, never update: skipped once it exists),
  ``Ignore`` (skipped, and never pruned);
- ``kustomize.toolkit.fluxcd.io/force: Enabled``: recreate this object on an immutable-field
  error, as ``ApplyOptions.force`` does for all;
- ``kustomize.toolkit.fluxcd.io/reconcile: disabled``: skipped, and never pruned;
- ``kustomize.toolkit.fluxcd.io/prune: disabled``: never pruned.

They are matched with ``controllers.ssa.any_in_metadata``.
"""

from __future__ import annotations

__all__ = [
    "EXCLUDED",
    "FORCED",
    "FORCE_ANNOTATION",
    "IF_NOT_PRESENT",
    "NOT_PRUNED",
    "NO_CLEANUP",
    "OWNER_GROUP",
    "PRUNE_ANNOTATION",
    "RECONCILE_ANNOTATION",
    "SSA_ANNOTATION",
]

OWNER_GROUP = "kustomize.toolkit.fluxcd.io"

SSA_ANNOTATION = f"{OWNER_GROUP}/ssa"
FORCE_ANNOTATION = f"{OWNER_GROUP}/force"
PRUNE_ANNOTATION = f"{OWNER_GROUP}/prune"
RECONCILE_ANNOTATION = f"{OWNER_GROUP}/reconcile"

# The selectors Flux's kustomize-controller hands to its apply engine.
EXCLUDED = {RECONCILE_ANNOTATION: "disabled", SSA_ANNOTATION: "Ignore"}
IF_NOT_PRESENT = {SSA_ANNOTATION: "IfNotPresent"}
FORCED = {FORCE_ANNOTATION: "Enabled"}
NO_CLEANUP = {SSA_ANNOTATION: "Merge"}
NOT_PRUNED = {
    PRUNE_ANNOTATION: "disabled",
    RECONCILE_ANNOTATION: "disabled",
    SSA_ANNOTATION: "Ignore",
}
