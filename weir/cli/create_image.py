"""``weir create image repository|policy|update``: the image automation kinds from flags, with
``flux create image``'s flag names, applied or printed (``--export``) as ``weir.cli.create``
does for every kind.

The flags are checked as Flux checks them before anything is applied (an image without a tag,
one policy, a filter pattern that compiles and an extract whose named groups it has, the
automation's author and branch); the rest is the kind's model, the same rules as its CRD.
Beyond Flux: ``--exclusion-list`` and ``--insecure`` for a repository, and an automation's
pull-request mode (``--pull-request-provider``, weir's ``spec.git.push.pullRequest``).
"""

from __future__ import annotations

import re
from typing import Any

import click

from controllers import goregexp
from controllers.oci.errors import InvalidReference
from image_automation.api_v1 import ImagePolicy, ImageRepository, ImageUpdateAutomation
from image_automation.scan import parse_image
from weir.cli.app import CliError, Exit, Session, cluster_command
from weir.cli.create import EXPORT, INTERVAL, create, create_object
from weir.cli.kinds import group_of

__all__ = ["extract_problem", "image", "policy_spec", "repository_spec", "update_spec"]

_ORDERS = ("asc", "desc")
_REFLECTION = ("Never", "IfNotPresent", "Always")


@group_of(create)
def image() -> None:
    """Create or update an ImageRepository, an ImagePolicy or an ImageUpdateAutomation.

    \b
    Examples:
      weir create image repository podinfo --image=ghcr.io/stefanprodan/podinfo --interval=5m
      weir create image policy podinfo --image-ref=podinfo --select-semver='>=1.0.0'
      weir create image update flux-system --git-repo-ref=flux-system \\
        --git-repo-path=./clusters/dev --checkout-branch=main \\
        --author-name=weir --author-email=weir@example.com
    """


create.add_aliases("image", ("images",))


def _ref(name: str | None) -> dict[str, str] | None:
    return {"name": name} if name else None


def repository_spec(
    image_name: str,
    interval: str,
    *,
    secret_ref: str | None = None,
    cert_secret_ref: str | None = None,
    scan_timeout: str | None = None,
    exclusion_list: tuple[str, ...] = (),
    insecure: bool = False,
) -> dict[str, Any]:
    """An ImageRepository's spec from the flags; ``CliError`` for an image Flux refuses."""
    try:
        parse_image(image_name, insecure=insecure)
    except InvalidReference as err:
        raise CliError(f"--image: {err.message}", Exit.USAGE) from None
    for pattern in exclusion_list:
        try:
            goregexp.compile_pattern(pattern)
        except ValueError as err:
            raise CliError(f"--exclusion-list {pattern!r}: {err}", Exit.USAGE) from None
    return {
        "image": image_name,
        "interval": interval,
        "timeout": scan_timeout,
        "secretRef": _ref(secret_ref),
        "certSecretRef": _ref(cert_secret_ref),
        "exclusionList": list(exclusion_list) or None,
        "insecure": insecure or None,
    }


@image.command("repository")
@click.argument("name")
@click.option(
    "--image", "image_name", required=True, help="the image to scan, e.g. library/alpine."
)
@INTERVAL
@click.option("--secret-ref", help="docker-registry Secret with the registry's credentials.")
@click.option(
    "--cert-ref",
    "--cert-secret-ref",
    "cert_secret_ref",
    help="Secret with TLS certificates for the registry (ca.crt; tls.crt and tls.key).",
)
@click.option("--scan-timeout", help="timeout of a scan (default: the interval).")
@click.option(
    "--exclusion-list",
    multiple=True,
    help="regular expression of tags to leave out; repeat for more (default: ^.*\\.sig$).",
)
@click.option("--insecure", is_flag=True, help="plain HTTP to the registry.")
@EXPORT
@cluster_command
async def repository(
    session: Session,
    name: str,
    image_name: str,
    interval: str,
    secret_ref: str | None,
    cert_secret_ref: str | None,
    scan_timeout: str | None,
    exclusion_list: tuple[str, ...],
    insecure: bool,
    export: bool,
) -> None:
    """Create or update an ImageRepository, an image whose tags are scanned.

    \b
    Examples:
      weir create image repository alpine --image=alpine --interval=20m
      weir create image repository app --image=registry.example.com/app \\
        --secret-ref=image-pull --cert-ref=registry-ca --interval=5m
    """
    spec = repository_spec(
        image_name,
        interval,
        secret_ref=secret_ref,
        cert_secret_ref=cert_secret_ref,
        scan_timeout=scan_timeout,
        exclusion_list=exclusion_list,
        insecure=insecure,
    )
    await create_object(session, ImageRepository, name, spec, export)


# $name, ${name}, or $$ (a literal $), as Go's Regexp.Expand reads a template.
_EXPANSION = re.compile(r"\$(?:\$|\{(?P<braced>[A-Za-z0-9_]+)\}|(?P<bare>[A-Za-z0-9_]+))")


def extract_problem(pattern: Any, extract: str) -> str | None:
    """What is wrong with ``extract`` for the compiled ``pattern``, as ``flux create image
    policy`` checks it: a ``$`` that starts no group reference, or a named group the pattern
    does not have (numbered groups are not checked); None when it is fine."""
    position = 0
    while (dollar := extract.find("$", position)) >= 0:
        found = _EXPANSION.match(extract, dollar)
        if found is None:
            return "--filter-extract is malformed"
        group = found.group("braced") or found.group("bare")
        if group and not group.isdigit() and group not in pattern.groupindex:
            return f"capture group ${group} used in --filter-extract not found in --filter-regex"
        position = found.end()
    return None


def policy_spec(
    image_ref: str,
    *,
    semver: str | None = None,
    alpha: str | None = None,
    numeric: str | None = None,
    filter_regex: str | None = None,
    filter_extract: str | None = None,
    reflect_digest: str | None = None,
    interval: str | None = None,
) -> dict[str, Any]:
    """An ImagePolicy's spec from the flags; ``CliError`` for what Flux refuses."""
    if len([choice for choice in (semver, alpha, numeric) if choice]) > 1:
        raise CliError(
            "only one of --select-semver, --select-alpha or --select-numeric can be specified",
            Exit.USAGE,
        )
    if semver:
        policy: dict[str, Any] = {"semver": {"range": semver}}
    elif alpha:
        policy = {"alphabetical": {"order": alpha}}
    elif numeric:
        policy = {"numerical": {"order": numeric}}
    else:
        raise CliError(
            "a policy is required: --select-semver, --select-alpha or --select-numeric",
            Exit.USAGE,
        )
    filter_tags = None
    if filter_regex:
        try:
            compiled = goregexp.compile_pattern(filter_regex)
        except ValueError as err:
            raise CliError(
                f"--filter-regex is an invalid regex pattern: {err}", Exit.USAGE
            ) from None
        problem = extract_problem(compiled, filter_extract) if filter_extract else None
        if problem is not None:
            raise CliError(problem, Exit.USAGE)
        filter_tags = {"pattern": filter_regex, "extract": filter_extract}
    elif filter_extract:
        raise CliError("--filter-extract needs --filter-regex", Exit.USAGE)
    if interval and reflect_digest != "Always":
        raise CliError("--interval is only for --reflect-digest=Always", Exit.USAGE)
    return {
        "imageRepositoryRef": {"name": image_ref},
        "policy": policy,
        "filterTags": {k: v for k, v in (filter_tags or {}).items() if v} or None,
        "digestReflectionPolicy": reflect_digest,
        # The CRD asks for an interval with Always; Flux's default for it.
        "interval": interval or ("10m" if reflect_digest == "Always" else None),
    }


@image.command("policy")
@click.argument("name")
@click.option("--image-ref", required=True, help="the ImageRepository whose tags to choose from.")
@click.option("--select-semver", help="a semver range the tags must satisfy, e.g. '1.x'.")
@click.option(
    "--select-alpha",
    type=click.Choice(_ORDERS),
    help="alphabetical order: asc chooses the last tag, desc the first.",
)
@click.option(
    "--select-numeric",
    type=click.Choice(_ORDERS),
    help="numerical order: asc chooses the highest, desc the lowest.",
)
@click.option("--filter-regex", help="regular expression (Go syntax) the tags must match.")
@click.option(
    "--filter-extract", help="what of a tag is compared, from --filter-regex's groups ($ts)."
)
@click.option(
    "--reflect-digest",
    type=click.Choice(_REFLECTION),
    help="when the chosen image's digest is looked up (default Never).",
)
@click.option(
    "--interval",
    help="how often the digest is looked up again; with --reflect-digest=Always (default 10m).",
)
@EXPORT
@cluster_command
async def policy(
    session: Session,
    name: str,
    image_ref: str,
    select_semver: str | None,
    select_alpha: str | None,
    select_numeric: str | None,
    filter_regex: str | None,
    filter_extract: str | None,
    reflect_digest: str | None,
    interval: str | None,
    export: bool,
) -> None:
    """Create or update an ImagePolicy, which chooses the latest image of an ImageRepository.

    \b
    Examples:
      weir create image policy podinfo --image-ref=podinfo --select-semver='>=1.0.0'
      weir create image policy podinfo --image-ref=podinfo --select-numeric=asc \\
        --filter-regex='^main-[a-f0-9]+-(?P<ts>[0-9]+)' --filter-extract='$ts'
    """
    spec = policy_spec(
        image_ref,
        semver=select_semver,
        alpha=select_alpha,
        numeric=select_numeric,
        filter_regex=filter_regex,
        filter_extract=filter_extract,
        reflect_digest=reflect_digest,
        interval=interval,
    )
    await create_object(session, ImagePolicy, name, spec, export)


def update_spec(
    git_repo_ref: str,
    checkout_branch: str,
    author_name: str,
    author_email: str,
    interval: str,
    *,
    git_repo_namespace: str | None = None,
    git_repo_path: str | None = None,
    push_branch: str | None = None,
    commit_template: str | None = None,
    signing_key_secret: str | None = None,
    signing_key_type: str | None = None,
    pull_request_provider: str | None = None,
    pull_request_secret_ref: str | None = None,
    pull_request_base: str | None = None,
) -> dict[str, Any]:
    """An ImageUpdateAutomation's spec from the flags; ``CliError`` for what Flux refuses."""
    if signing_key_type and not signing_key_secret:
        raise CliError("--signing-key-type requires --signing-key-secret", Exit.USAGE)
    if bool(pull_request_provider) != bool(pull_request_secret_ref):
        raise CliError(
            "--pull-request-provider and --pull-request-secret-ref go together", Exit.USAGE
        )
    if pull_request_base and not pull_request_provider:
        raise CliError("--pull-request-base needs --pull-request-provider", Exit.USAGE)
    commit: dict[str, Any] = {
        "author": {"name": author_name, "email": author_email},
        "messageTemplate": commit_template or None,
    }
    if signing_key_secret:
        commit["signingKey"] = {"secretRef": {"name": signing_key_secret}}
        if signing_key_type:
            commit["signingKey"]["type"] = signing_key_type
    push: dict[str, Any] = {}
    if push_branch:
        push["branch"] = push_branch
    if pull_request_provider:
        request = {
            "provider": pull_request_provider,
            "secretRef": {"name": pull_request_secret_ref},
            "base": pull_request_base,
        }
        push["pullRequest"] = {k: v for k, v in request.items() if v}
    git: dict[str, Any] = {
        "checkout": {"ref": {"branch": checkout_branch}},
        "commit": {k: v for k, v in commit.items() if v is not None},
    }
    if push:
        git["push"] = push
    source_ref = {"kind": "GitRepository", "name": git_repo_ref, "namespace": git_repo_namespace}
    return {
        "sourceRef": {k: v for k, v in source_ref.items() if v},
        "git": git,
        "interval": interval,
        "update": {"path": git_repo_path, "strategy": "Setters"} if git_repo_path else None,
    }


@image.command("update")
@click.argument("name")
@click.option("--git-repo-ref", required=True, help="the GitRepository whose repository to update.")
@click.option(
    "--git-repo-namespace", help="the GitRepository's namespace (default: the automation's)."
)
@click.option(
    "--git-repo-path", help="directory of the manifests to update (default: the repository root)."
)
@click.option("--checkout-branch", required=True, help="the branch to clone.")
@click.option("--push-branch", help="the branch to push to (default: the checkout branch).")
@click.option("--author-name", required=True, help="the commits' author name.")
@click.option("--author-email", required=True, help="the commits' author email.")
@click.option("--commit-template", help="template of the commit messages (Go template).")
@click.option("--signing-key-secret", help="Secret with the key the commits are signed with.")
@click.option(
    "--signing-key-type",
    type=click.Choice(["gpg", "ssh"]),
    help="the signing key's format (default gpg).",
)
@click.option(
    "--pull-request-provider",
    type=click.Choice(["gitea", "github"]),
    help="weir: open pull requests on this Git host's API instead of pushing to the branch.",
)
@click.option(
    "--pull-request-secret-ref", help="weir: Secret with the Git host API's token ('token')."
)
@click.option(
    "--pull-request-base", help="weir: the pull requests' target branch (default: checkout)."
)
@INTERVAL
@EXPORT
@cluster_command
async def update(
    session: Session,
    name: str,
    git_repo_ref: str,
    git_repo_namespace: str | None,
    git_repo_path: str | None,
    checkout_branch: str,
    push_branch: str | None,
    author_name: str,
    author_email: str,
    commit_template: str | None,
    signing_key_secret: str | None,
    signing_key_type: str | None,
    pull_request_provider: str | None,
    pull_request_secret_ref: str | None,
    pull_request_base: str | None,
    interval: str,
    export: bool,
) -> None:
    """Create or update an ImageUpdateAutomation, which writes the policies' latest images to
    the files of a Git repository, as a commit or (weir) a pull request.

    \b
    Examples:
      weir create image update flux-system --git-repo-ref=flux-system \\
        --git-repo-path=./clusters/dev --checkout-branch=main \\
        --author-name=weir --author-email=weir@example.com \\
        --commit-template='{{range .Changed.Changes}}{{println .OldValue "->" .NewValue}}{{end}}'
      weir create image update staging --git-repo-ref=fleet --checkout-branch=main \\
        --author-name=weir --author-email=weir@example.com \\
        --pull-request-provider=gitea --pull-request-secret-ref=gitea-token
    """
    spec = update_spec(
        git_repo_ref,
        checkout_branch,
        author_name,
        author_email,
        interval,
        git_repo_namespace=git_repo_namespace,
        git_repo_path=git_repo_path,
        push_branch=push_branch,
        commit_template=commit_template,
        signing_key_secret=signing_key_secret,
        signing_key_type=signing_key_type,
        pull_request_provider=pull_request_provider,
        pull_request_secret_ref=pull_request_secret_ref,
        pull_request_base=pull_request_base,
    )
    await create_object(session, ImageUpdateAutomation, name, spec, export)
