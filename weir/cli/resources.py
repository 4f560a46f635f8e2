"""Any kind the cluster serves, named as ``kubectl`` names it (``deploy``, ``configmaps``,
``Deployment``, ``deployments.apps``), for the commands that take arbitrary objects."""

from __future__ import annotations

from controllers.api import ResourceInfo
from controllers.discovery import RestMapper, UnknownKind
from weir.cli.app import CliError, Exit

__all__ = ["find_resource", "find_resource_by_kind"]


async def find_resource(mapper: RestMapper, name: str) -> ResourceInfo:
    """The kind ``name`` names: its plural, singular, short name or kind in any case, optionally
    qualified as ``<name>.<group>`` or ``<name>.<version>.<group>``; the first in discovery's
    order when several answer (the core group first), as kubectl picks.

    Raises ``CliError`` (usage) when the cluster serves no such kind.
    """
    word, _, qualifier = name.partition(".")
    word = word.lower()
    for info in await mapper.kinds():
        if word not in (info.plural, info.singular, *info.short_names):
            continue
        if qualifier and qualifier not in (info.group, f"{info.version}.{info.group}"):
            continue
        return info
    raise CliError(f'the server has no resource type "{name}"', Exit.USAGE)


async def find_resource_by_kind(mapper: RestMapper, api_version: str, kind: str) -> ResourceInfo:
    """The kind ``kind`` of ``api_version``, its name in any case (``--kind=deployment``).

    Raises ``CliError`` (usage) when the cluster serves no such kind.
    """
    try:
        return await mapper.resource_for(api_version, kind)
    except UnknownKind:
        pass
    for info in await mapper.kinds():
        if info.api_version == api_version and info.kind.lower() == kind.lower():
            return info
    raise CliError(f'the server has no kind "{kind}" in "{api_version}"', Exit.USAGE)
