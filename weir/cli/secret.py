"""``weir create secret git`` and ``receiver``: the Secret a GitRepository authenticates with,
and the one whose token a Receiver checks webhooks with."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from controllers.kinds import SECRET
from controllers.kube import APPLY_PATCH, KubeClient, resource_path
from weir.cli.app import CliError, Exit, Session, cluster_command, note
from weir.cli.create import FIELD_MANAGER, create
from weir.cli.kinds import group_of
from weir.cli.output import to_yaml
from weir.gitauth import GitAuthError, generate_key_pair, load_key_pair, scan_known_hosts

__all__ = ["git_secret_data", "secret"]


@group_of(create)
def secret() -> None:
    """Create or update a Secret for a source or a Receiver.

    \b
    Examples:
      weir create secret git podinfo-auth --url=ssh://git@example.com/org/podinfo
      weir create secret receiver webhook-token
    """


def git_secret_data(
    url: str,
    *,
    username: str | None = None,
    password: str | None = None,
    bearer_token: str | None = None,
    private_key: bytes | None = None,
    key_password: str | None = None,
    key_algorithm: str = "ed25519",
    known_hosts: str | None = None,
    ca: bytes | None = None,
) -> dict[str, str]:
    """The Secret's ``stringData`` for ``url``: an SSH key pair (given, or new) and the host's
    keys for ``ssh://``; basic auth or a bearer token for ``http(s)://``."""
    scheme = urlsplit(url).scheme
    try:
        if scheme == "ssh":
            pair = (
                load_key_pair(private_key, key_password)
                if private_key is not None
                else generate_key_pair(key_algorithm)  # type: ignore[arg-type]
            )
            data = {
                "identity": pair.private,
                "identity.pub": pair.public + "\n",
                "known_hosts": known_hosts or scan_known_hosts(url),
            }
            if key_password:
                data["password"] = key_password
            return data
    except GitAuthError as err:
        raise CliError(str(err), Exit.USAGE) from None
    if scheme not in ("http", "https"):
        raise CliError(f"--url must be ssh://, https:// or http://, not {url}", Exit.USAGE)
    if bearer_token and (username or password):
        raise CliError("give --bearer-token or --username/--password, not both", Exit.USAGE)
    data = {}
    if bearer_token:
        data["bearerToken"] = bearer_token
    elif username or password:
        if not (username and password):
            raise CliError("--username and --password go together", Exit.USAGE)
        data = {"username": username, "password": password}
    if ca is not None:
        data["ca.crt"] = ca.decode()
    if not data:
        raise CliError("nothing to store: give credentials for an https:// URL", Exit.USAGE)
    return data


def secret_manifest(name: str, namespace: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "stringData": data,
    }


async def apply_secret(client: KubeClient, manifest: dict[str, Any]) -> None:
    meta = manifest["metadata"]
    await client.request(
        "PATCH",
        resource_path(SECRET, meta["namespace"], meta["name"]),
        query={"fieldManager": FIELD_MANAGER, "force": "true"},
        body=manifest,
        content_type=APPLY_PATCH,
    )


def _read(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as err:
        raise CliError(f"cannot read {path}: {err.strerror}", Exit.USAGE) from None


@secret.command("git")
@click.argument("name")
@click.option("--url", required=True, help="the repository's address (ssh:// or https://).")
@click.option("-u", "--username", help="user for basic auth over HTTPS.")
@click.option("-p", "--password", help="password or token for basic auth over HTTPS.")
@click.option("--bearer-token", help="token sent as 'Authorization: Bearer' over HTTPS.")
@click.option(
    "--private-key-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="SSH private key (a new one is made when not given).",
)
@click.option("--key-password", help="password of the SSH private key.")
@click.option(
    "--ssh-key-algorithm",
    type=click.Choice(["ed25519", "ecdsa", "rsa"]),
    default="ed25519",
    show_default=True,
    help="algorithm of a new SSH key.",
)
@click.option(
    "--ssh-known-hosts",
    type=click.Path(path_type=Path, dir_okay=False),
    help="the host's keys, known_hosts format (else asked from the host: trust on first use).",
)
@click.option("--ca-file", type=click.Path(path_type=Path, dir_okay=False), help="CA for HTTPS.")
@click.option("--export", is_flag=True, help="print the Secret instead of applying it.")
@cluster_command
async def git(
    session: Session,
    name: str,
    url: str,
    username: str | None,
    password: str | None,
    bearer_token: str | None,
    private_key_file: Path | None,
    key_password: str | None,
    ssh_key_algorithm: str,
    ssh_known_hosts: Path | None,
    ca_file: Path | None,
    export: bool,
) -> None:
    """Create or update a Secret with Git credentials; prints the deploy key of a new key.

    \b
    Examples:
      weir create secret git podinfo-auth --url=ssh://git@github.com/org/podinfo
      weir create secret git podinfo-auth --url=https://github.com/org/podinfo -u git -p $TOKEN
    """
    known_hosts = _read(ssh_known_hosts)
    data = git_secret_data(
        url,
        username=username,
        password=password,
        bearer_token=bearer_token,
        private_key=_read(private_key_file),
        key_password=key_password,
        key_algorithm=ssh_key_algorithm,
        known_hosts=known_hosts.decode() if known_hosts is not None else None,
        ca=_read(ca_file),
    )
    manifest = secret_manifest(name, session.namespace, data)
    if "identity.pub" in data and private_key_file is None:
        note(f"► deploy key: {data['identity.pub'].strip()}")
    if export:
        click.echo(to_yaml([manifest]), nl=False)
        return
    await apply_secret(await session.client(), manifest)
    note(f"✔ Secret {session.namespace}/{name} applied")


# As long as the tokens Flux's docs make (head -c 12 /dev/urandom | shasum): 40 hex digits.
TOKEN_BYTES = 20


@secret.command("receiver")
@click.argument("name")
@click.option(
    "--token",
    envvar="WEIR_RECEIVER_TOKEN",
    help="the token ($WEIR_RECEIVER_TOKEN); a new random one when not given.",
)
@click.option("--export", is_flag=True, help="print the Secret instead of applying it.")
@cluster_command
async def receiver(session: Session, name: str, token: str | None, export: bool) -> None:
    """Create or update the Secret of a Receiver: its 'token', which signs or carries the
    webhooks and makes the hook path. Give the Git host the same token (--export shows it).

    \b
    Example:
      weir create secret receiver webhook-token
    """
    manifest = secret_manifest(
        name, session.namespace, {"token": token or secrets.token_hex(TOKEN_BYTES)}
    )
    if export:
        click.echo(to_yaml([manifest]), nl=False)
        return
    await apply_secret(await session.client(), manifest)
    note(f"✔ Secret {session.namespace}/{name} applied")
