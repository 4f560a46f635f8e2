"""The credentials of a GitRepository, read as the source controller reads them, for every
controller that talks to its remote (the source controller fetches, the image automation
controller clones and pushes)."""

from __future__ import annotations

from controllers.git.errors import AUTH_FAILED, GitError
from controllers.kube import KubeClient
from controllers.secrets import SecretError, proxy_url, read_secret

__all__ = ["read_credentials"]


async def read_credentials(
    client: KubeClient,
    namespace: str,
    secret_name: str | None,
    proxy_secret_name: str | None,
) -> tuple[dict[str, str], str | None]:
    """The ``secretRef`` Secret's data (every value as text: the git worker gets them as JSON)
    and the ``proxySecretRef`` proxy URL; an unusable Secret fails authentication."""
    try:
        auth = dict(await read_secret(client, namespace, secret_name)) if secret_name else {}
        proxy = None
        if proxy_secret_name is not None:
            data = await read_secret(client, namespace, proxy_secret_name)
            proxy = proxy_url(data, data.ref)
    except SecretError as err:
        raise GitError(str(err), reason=AUTH_FAILED) from None
    return auth, proxy
