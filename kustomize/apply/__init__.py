"""Server-side apply of a Kustomization's objects in Flux's stages, and pruning of what left it
(fluxcd/pkg ``ssa``).

- ``manager``: ``ResourceManager``, which plans, applies and prunes;
- ``changeset``: what was done to each object;
- ``errors``: how applying fails, and what the messages say;
- ``annotations``: the per-object annotations that opt an object out of parts of it;
- ``managedfields``: taking over the fields other managers own, before applying.

The parts other controllers share (the apply call, ``normalize``, the opt-out matcher, the
failure wording) are in ``controllers.ssa``.
"""
