"""``weir bootstrap git``: put weir in a Git repository and make the cluster follow it.

As ``flux bootstrap git``: commit the install bundle and the ``flux-system`` sync manifests
under ``--path`` (only when they differ from what the branch holds), install the bundle, store
the credentials in the Secret ``flux-system``, apply the sync manifests and wait until the
Kustomization ``flux-system`` is Ready. Running it again commits nothing and changes nothing.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from urllib.parse import urlsplit

import click

from controllers.kinds import SECRET
from weir import bootstrap as repository
from weir.bundle import WEIR_VERSION, BundleOptions, render
from weir.cli.app import CliError, Exit, Session, cluster_command, err_console, main, note
from weir.cli.create import apply_and_wait
from weir.cli.install import components_options, install_objects
from weir.cli.kinds import group_of
from weir.cli.secret import apply_secret, git_secret_data, secret_manifest

__all__ = ["bootstrap"]


@group_of(main)
def bootstrap() -> None:
    """Commit weir's manifests to a Git repository and make the cluster follow it.

    \b
    Example:
      weir bootstrap git --url=ssh://git@example.com/org/fleet --branch=main \\
        --path=clusters/production --private-key-file=./deploy-key
    """


def _read(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text()
    except OSError as err:
        raise CliError(f"cannot read {path}: {err.strerror}", Exit.USAGE) from None


@bootstrap.command("git")
@click.option("--url", required=True, help="the repository: ssh://, https://, http:// or git://.")
@click.option("--branch", default="main", show_default=True, help="the branch to follow.")
@click.option("--path", "path_", required=True, help="directory of this cluster (clusters/<name>).")
@click.option(
    "--private-key-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="SSH key to push with and for the cluster (else the one the cluster has, or a new one).",
)
@click.option(
    "--ssh-known-hosts",
    type=click.Path(path_type=Path, dir_okay=False),
    help="the host's keys (known_hosts format); else asked from the host (trust on first use).",
)
@click.option("-u", "--username", default="git", show_default=True, help="HTTPS user.")
@click.option("-p", "--password", help="HTTPS password or token.")
@click.option("--ca-file", type=click.Path(path_type=Path, dir_okay=False), help="CA for HTTPS.")
@click.option("--silent", is_flag=True, help="do not stop to ask that a new deploy key be added.")
@components_options
@cluster_command
async def git(
    session: Session,
    url: str,
    branch: str,
    path_: str,
    private_key_file: Path | None,
    ssh_known_hosts: Path | None,
    username: str,
    password: str | None,
    ca_file: Path | None,
    silent: bool,
    components: tuple[str, ...],
) -> None:
    """Bootstrap from a Git repository, over SSH, HTTPS (a token as --password) or git://.

    \b
    Examples:
      weir bootstrap git --url=ssh://git@example.com/org/fleet --path=clusters/dev \\
        --private-key-file=~/.ssh/fleet
      weir bootstrap git --url=https://example.com/org/fleet.git --path=clusters/dev \\
        -u git -p $TOKEN
    """
    namespace = session.namespace
    client = await session.client()
    scheme = urlsplit(url).scheme
    data: dict[str, str] = {}
    if scheme == "ssh":
        key = _read(private_key_file)
        existing = await client.get_or_none(SECRET, namespace, repository.SYNC_NAME)
        if key is None and existing is not None and "identity" in (existing.get("data") or {}):
            # A second run keeps the key the cluster already has (and its deploy key).
            key = base64.b64decode(existing["data"]["identity"]).decode()
        data = git_secret_data(
            url,
            private_key=key.encode() if key is not None else None,
            known_hosts=_read(ssh_known_hosts),
        )
        if key is None:
            note(f"► deploy key: {data['identity.pub'].strip()}")
            if not silent:
                click.confirm(
                    "Add it to the repository with write access; continue?",
                    abort=True,
                    err=True,
                )
        credentials = repository.GitCredentials(
            identity=data["identity"], known_hosts=data["known_hosts"]
        )
    elif scheme in ("http", "https"):
        ca = _read(ca_file)
        if password:
            data = git_secret_data(
                url,
                username=username,
                password=password,
                ca=ca.encode() if ca is not None else None,
            )
        credentials = repository.GitCredentials(
            username=username if password else None, password=password, ca=ca
        )
    elif scheme == "git":
        credentials = repository.GitCredentials()
    else:
        raise CliError(f"--url must be ssh://, https://, http:// or git://, not {url}", Exit.USAGE)

    options = BundleOptions(namespace=namespace, components=components)
    bundle = render(options)
    sync = repository.sync_manifests(url, branch, path_, namespace)
    if not data:
        del sync[0]["spec"]["secretRef"]
    files = repository.manifest_files(path_, bundle, sync)
    with err_console.status(f"committing the manifests to {branch}"):
        try:
            commit = await asyncio.to_thread(
                repository.commit_manifests, url, branch, files, credentials, version=WEIR_VERSION
            )
        except repository.BootstrapError as err:
            raise CliError(str(err)) from None
    if commit is None:
        note(f"✔ {branch} already has the manifests under {path_}: nothing committed")
    else:
        note(f"✔ committed and pushed {commit} to {branch}")

    await install_objects(client, bundle, session.timeout)
    if data:
        await apply_secret(client, secret_manifest(repository.SYNC_NAME, namespace, data))
        note(f"✔ Secret {namespace}/{repository.SYNC_NAME} applied")
    async with session.within_timeout():
        for manifest in sync:
            await apply_and_wait(client, manifest, session.timeout)
    note("✔ bootstrap finished")
