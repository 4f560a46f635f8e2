"""What follows the kustomize build and decryption of a Kustomization: ``postBuild``
substitution, then ``commonMetadata``, in Flux's order.

One function, so that the controller and ``weir build`` render a Kustomization the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from controllers.kube import KubeClient
from kustomize.api_v1 import Kustomization
from kustomize.build import set_common_metadata
from kustomize.substitute import load_variables, substitute_objects

__all__ = ["post_build"]


async def post_build(
    client: KubeClient,
    obj: Kustomization,
    objects: Sequence[dict[str, Any]],
    *,
    strict: bool,
) -> list[dict[str, Any]]:
    """``objects`` with ``spec.postBuild`` variables substituted (the ConfigMaps and Secrets of
    ``substituteFrom`` read with ``client`` in the Kustomization's namespace) and
    ``spec.commonMetadata`` set; ``strict``: an unset variable without a default is an error.

    Raises ``SubstitutionError`` naming the object, variable or source at fault.
    """
    spec, namespace = obj.spec, obj.metadata.namespace or ""
    result = list(objects)
    if spec.post_build is not None:
        variables = await load_variables(client, namespace, spec.post_build)
        # Bounded, but seconds of CPU for a large object: off the event loop.
        result = await asyncio.to_thread(
            substitute_objects,
            result,
            variables,
            strict=strict,
            always=obj.substitute_strategy == "Always",
        )
    if spec.common_metadata is not None:
        metadata = spec.common_metadata
        set_common_metadata(result, metadata.labels or {}, metadata.annotations or {})
    return result
