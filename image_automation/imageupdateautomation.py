"""The ImageUpdateAutomation reconciler: the latest images of the ImagePolicies, written back to
Git at their setter markers, as image-automation-controller does (``internal/controller``).

One step:

- what cannot work stalls until the spec changes: no ``spec.git``, a policy selector that does
  not parse, a cross-namespace GitRepository under ``--no-cross-namespace-refs``, no branch to
  push to, a message template Go cannot render;
- the ImagePolicies of the automation's namespace that ``policySelector`` selects and that have
  a ``latestRef`` (``status.observedPolicies``);
- the GitRepository's URL, credentials (``secretRef``, ``proxySecretRef``) and ``timeout``;
  the ref to check out (``spec.git.checkout.ref``, else the GitRepository's);
- **push mode** (Flux's): clone onto the push branch, rewrite the marked values under
  ``update.path`` (``image_automation.setters``: nothing else in any file changes), commit with
  the template's message (``image_automation.message``), signed when ``signingKey`` says so,
  and push; a push the remote refused because it moved is done again on the new head (up to
  ``PUSH_ATTEMPTS`` times), so one commit lands on top of the other's;
- **pull-request mode** (weir's ``spec.git.push.pullRequest``): the changes against the base
  branch are found first; each ImagePolicy with a change gets branch
  ``image-updates/<policy>`` (or every change goes to ``spec.git.push.branch`` when set),
  rebuilt from the base with one commit and force-pushed, and one open pull request from it
  (``image_automation.pullrequest``), updated in place by a newer tag. A pull request that
  already proposes exactly this change is left alone (no push), and one closed without merging
  is not opened again for the same change.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controllers import conditions as cond
from controllers.api import ResourceInfo, object_key, parse_duration, time_now
from controllers.apitypes import LabelSelector
from controllers.git.credentials import read_credentials
from controllers.kube import ApiError
from controllers.reconcile import (
    ReconcileError,
    Reconciler,
    Result,
    RunContext,
    Stalling,
    Step,
    Watch,
)
from controllers.secrets import SecretError, read_secret
from image_automation import git
from image_automation.api_v1 import (
    GitRepositoryRef,
    ImagePolicy,
    ImageRef,
    ImageUpdateAutomation,
    PullRequestSpec,
)
from image_automation.message import CommitMessageError, render_message
from image_automation.pullrequest import (
    PullRequestClient,
    PullRequestError,
    as_posted,
    host_for,
    same_text,
)
from image_automation.setters import Update, update_with_setters
from image_automation.update_result import Result as Changes
from image_automation.update_result import template_data

__all__ = [
    "GIT_OPERATION_FAILED",
    "GIT_REPOSITORY",
    "ImageUpdateAutomationReconciler",
    "label_selector_query",
]

GIT_REPOSITORY = ResourceInfo(
    group="source.toolkit.fluxcd.io", version="v1", kind="GitRepository", plural="gitrepositories"
)
# Flux's reasons.
ACCESS_DENIED = "AccessDenied"
INVALID_SOURCE_CONFIG = "InvalidSourceConfiguration"
INVALID_POLICY_SELECTOR = "InvalidPolicySelector"
SOURCE_MANAGER_FAILED = "SourceManagerFailed"
GIT_OPERATION_FAILED = "GitOperationFailed"
UPDATE_FAILED = "UpdateFailed"
REMOVED_TEMPLATE_FIELD = "RemovedTemplateField"
# weir's: a template Go cannot render (Flux retries it as a Git failure).
INVALID_MESSAGE_TEMPLATE = "InvalidMessageTemplate"
PULL_REQUEST_FAILED = "PullRequestFailed"

READY_MESSAGE = "repository up-to-date"
PUSH_ATTEMPTS = 3
DEFAULT_GIT_TIMEOUT = 60.0
PULL_REQUEST_BRANCH_PREFIX = "image-updates/"
# Skipped files named in a warning, at most.
MAX_PROBLEM_FILES = 5


@dataclass
class AutomationRunState:
    """What the run found: the selected policies' latest images, by ``<ns>:<name>``."""

    refs: dict[str, ImageRef] = field(default_factory=dict)


@dataclass(frozen=True)
class _Source:
    """The GitRepository as the automation uses it."""

    url: str
    auth: Mapping[str, str] = field(repr=False)
    proxy: str | None = field(repr=False)
    ref: GitRepositoryRef | None
    timeout: float


class ImageUpdateAutomationReconciler(Reconciler[ImageUpdateAutomation, AutomationRunState]):
    """Writes the ImagePolicies' latest images to Git for each ImageUpdateAutomation."""

    model = ImageUpdateAutomation
    owned_conditions: tuple[str, ...] = ()

    def __init__(self, *, no_cross_namespace_refs: bool = False) -> None:
        self.no_cross_namespace_refs = no_cross_namespace_refs

    @property
    def steps(self) -> Sequence[Step[ImageUpdateAutomation, AutomationRunState]]:
        return [self.update]

    @property
    def watches(self) -> Sequence[Watch]:
        return [
            Watch(GIT_REPOSITORY, automations_of_changed_repository),
            Watch(ImagePolicy.info, automations_of_changed_policy),
        ]

    def new_state(self) -> AutomationRunState:
        return AutomationRunState()

    async def finalize(
        self, ctx: RunContext[AutomationRunState], obj: ImageUpdateAutomation
    ) -> None:
        return None

    async def update(
        self, ctx: RunContext[AutomationRunState], obj: ImageUpdateAutomation
    ) -> Result:
        """Write the policies' latest images to Git (or propose them); record what was done."""
        obj.status.last_automation_run_time = time_now()
        spec = obj.spec
        if spec.git is None:
            raise Stalling(
                "source kind 'GitRepository' necessitates field .spec.git",
                reason=INVALID_SOURCE_CONFIG,
            )
        ctx.state.refs = await self._policies(ctx, obj)
        source = await self._source(ctx, obj)
        observed = {key.split(":", 1)[1]: ref for key, ref in ctx.state.refs.items()}
        if spec.git.push is not None and spec.git.push.pull_request is not None:
            message = await self._propose(ctx, obj, source, spec.git.push.pull_request)
        else:
            message = await self._push(ctx, obj, source)
        obj.status.observed_policies = observed
        return Result(requeue_after=obj.interval_seconds, message=message)

    async def _policies(
        self, ctx: RunContext[AutomationRunState], obj: ImageUpdateAutomation
    ) -> dict[str, ImageRef]:
        """The selected ImagePolicies that have a latest image, by ``<ns>:<name>``."""
        namespace = obj.metadata.namespace or ""
        try:
            query = label_selector_query(obj.spec.policy_selector)
        except ValueError as err:
            raise Stalling(
                f"failed to parse policy selector: {err}", reason=INVALID_POLICY_SELECTOR
            ) from None
        try:
            listed = await ctx.client.list(ImagePolicy.info, namespace, label_selector=query)
        except ApiError as err:
            raise ReconcileError(f"failed to list policies: {err}") from None
        refs: dict[str, ImageRef] = {}
        for item in sorted(listed["items"], key=lambda i: i["metadata"]["name"]):
            latest = (item.get("status") or {}).get("latestRef")
            if latest:
                refs[f"{namespace}:{item['metadata']['name']}"] = ImageRef.model_validate(latest)
        return refs

    async def _source(
        self, ctx: RunContext[AutomationRunState], obj: ImageUpdateAutomation
    ) -> _Source:
        """The GitRepository's URL, credentials, ref to check out and timeout."""
        own = obj.metadata.namespace or ""
        ref = obj.spec.source_ref
        namespace = ref.namespace or own
        if namespace != own and self.no_cross_namespace_refs:
            raise Stalling(
                f"can't access 'GitRepository/{namespace}/{ref.name}', cross-namespace "
                "references have been blocked",
                reason=ACCESS_DENIED,
            )
        repository = await ctx.read(GIT_REPOSITORY, namespace, ref.name)
        if repository is None:
            raise ReconcileError(
                "failed configuring source manager: referenced git repository does not exist: "
                f'gitrepositories.source.toolkit.fluxcd.io "{ref.name}" not found',
                reason=SOURCE_MANAGER_FAILED,
            )
        spec = repository.get("spec") or {}
        if spec.get("provider") not in (None, "generic"):
            raise Stalling(
                f"GitRepository '{namespace}/{ref.name}' uses the '{spec['provider']}' "
                "provider, which weir does not support yet; use 'generic' with credentials in "
                "its spec.secretRef",
                reason=INVALID_SOURCE_CONFIG,
            )
        secret = (spec.get("secretRef") or {}).get("name")
        proxy = (spec.get("proxySecretRef") or {}).get("name")
        try:
            auth, proxy_url = await read_credentials(ctx.client, namespace, secret, proxy)
        except git.GitError as err:
            raise ReconcileError(
                f"failed configuring source manager: {err}", reason=SOURCE_MANAGER_FAILED
            ) from None
        assert obj.spec.git is not None
        checkout = obj.spec.git.checkout
        if checkout is not None:
            checkout_ref: GitRepositoryRef | None = checkout.ref
        elif spec.get("ref"):
            checkout_ref = GitRepositoryRef.model_validate(spec["ref"])
        else:
            checkout_ref = None
        timeout = _seconds(spec.get("timeout")) or DEFAULT_GIT_TIMEOUT
        return _Source(str(spec.get("url") or ""), auth, proxy_url, checkout_ref, timeout)

    async def _push(
        self, ctx: RunContext[AutomationRunState], obj: ImageUpdateAutomation, source: _Source
    ) -> str:
        """Flux's mode: commit the changes on the push branch and push them."""
        git_spec = obj.spec.git
        assert git_spec is not None
        push = git_spec.push
        branch = self._push_branch(source, push.branch if push else None)
        signing = await self._signing_key(ctx, obj)
        for attempt in range(1, PUSH_ATTEMPTS + 1):
            with tempfile.TemporaryDirectory(prefix="automation-") as work:
                cloned = await self._clone(source, branch, Path(work) / "repo")
                update = self._apply(obj, cloned.path, ctx.state.refs, ctx)
                if not update.files:
                    obj.status.observed_source_revision = cloned.revision
                    return READY_MESSAGE
                _write(cloned.path, obj, update)
                message = await self._message(obj, update.result, git_spec.commit.message_template)
                try:
                    pushed = await git.commit_and_push(
                        cloned,
                        author=git.Author(
                            git_spec.commit.author.email, git_spec.commit.author.name or ""
                        ),
                        message=message,
                        timeout=source.timeout,
                        signing=signing,
                        refspec=push.refspec if push else None,
                        push_options=push.options if push else None,
                    )
                except git.PushRejected as err:
                    if attempt == PUSH_ATTEMPTS:
                        raise ReconcileError(
                            f"failed to update source: {err}", reason=GIT_OPERATION_FAILED
                        ) from None
                    ctx.log.info("push rejected, trying again on the new head", attempt=attempt)
                    continue
                except git.GitError as err:
                    raise ReconcileError(
                        f"failed to update source: {err}", reason=GIT_OPERATION_FAILED
                    ) from None
            if pushed is None:
                obj.status.observed_source_revision = cloned.revision
                return READY_MESSAGE
            obj.status.last_push_commit = pushed
            obj.status.last_push_time = time_now()
            obj.status.observed_source_revision = (
                cloned.revision if cloned.switched else f"{branch}@sha1:{pushed}"
            )
            summary = f"pushed commit '{pushed[:7]}' to branch '{branch}'"
            if push is not None and push.refspec:
                summary += f" and refspecs '{push.refspec}'"
            ctx.notify(cond.SUCCEEDED, f"{summary}\n{message}", revision=pushed)
            return READY_MESSAGE
        raise AssertionError("unreachable: every attempt returns or raises")

    async def _propose(
        self,
        ctx: RunContext[AutomationRunState],
        obj: ImageUpdateAutomation,
        source: _Source,
        pull_request: PullRequestSpec,
    ) -> str:
        """weir's mode: each change against the base branch as a pull request."""
        git_spec = obj.spec.git
        assert git_spec is not None
        assert git_spec.push is not None
        base = pull_request.base or self._push_branch(source, None)
        if git_spec.push.refspec:
            raise Stalling(
                "spec.git.push.refspec cannot be used with spec.git.push.pullRequest: the "
                "changes go to the pull requests' branches only",
                reason=INVALID_SOURCE_CONFIG,
            )
        if git_spec.push.branch == base:
            # The branch is rebuilt from the base and force-pushed: never the base itself.
            raise Stalling(
                f"spec.git.push.branch '{base}' is the pull requests' base branch: name a "
                "branch of the automation's own, or leave it unset for one per ImagePolicy",
                reason=INVALID_SOURCE_CONFIG,
            )
        # Both the changes and the pull requests' branches start from the base branch.
        source = dataclasses.replace(source, ref=GitRepositoryRef(branch=base))
        with tempfile.TemporaryDirectory(prefix="automation-") as work:
            cloned = await self._clone(source, base, Path(work) / "base")
            groups, settled = self._groups(
                ctx, obj, cloned.path, ctx.state.refs, git_spec.push.branch
            )
            obj.status.observed_source_revision = cloned.revision
        if not groups and not settled:
            return READY_MESSAGE
        host = await self._host(ctx, obj, source, pull_request)
        signing = await self._signing_key(ctx, obj)
        outcomes = []
        async with PullRequestClient(host) as prs:
            for head in settled:
                note = await self._close_settled(prs, head, base)
                if note:
                    ctx.notify(cond.SUCCEEDED, note)
                    outcomes.append(note)
            for head, refs, changes in groups:
                message = await self._message(obj, changes, git_spec.commit.message_template)
                body = f"{message.rstrip()}\n\n{_change_list(obj, changes)}"
                title = await self._title(obj, pull_request, changes, refs, message)
                # Compared as the host keeps them (one line, cut to its limits).
                title, body = as_posted(title, body)
                try:
                    open_pr = await prs.find_open(head, base)
                    if open_pr is not None and _same(open_pr.title, title, open_pr.body, body):
                        outcomes.append(f"pull request {open_pr.url} is up-to-date")
                        continue
                    if open_pr is None:
                        closed = await prs.newest_closed(head, base)
                        if closed and not closed.merged and same_text(closed.body, body):
                            outcomes.append(f"pull request {closed.url} was declined")
                            continue
                    pushed = await self._push_proposal(obj, source, head, refs, message, signing)
                    outcome = await prs.ensure(head, base, title, body)
                except PullRequestError as err:
                    raise ReconcileError(
                        f"failed to propose the update: {err}", reason=PULL_REQUEST_FAILED
                    ) from None
                if pushed is not None:
                    obj.status.last_push_commit = pushed
                    obj.status.last_push_time = time_now()
                pr = outcome.pull_request
                text = f"{outcome.action} pull request {pr.url} from branch '{head}' to '{base}'"
                ctx.notify(cond.SUCCEEDED, f"{text}\n{message}", revision=pushed)
                outcomes.append(text)
        return "; ".join(outcomes) or READY_MESSAGE

    def _groups(
        self,
        ctx: RunContext[AutomationRunState],
        obj: ImageUpdateAutomation,
        root: Path,
        refs: Mapping[str, ImageRef],
        branch: str | None,
    ) -> tuple[list[tuple[str, dict[str, ImageRef], Changes]], list[str]]:
        """What to propose, against the base branch checked out at ``root``: (head branch,
        the policies it carries, their changes), one group per policy with a change or one
        for all of them when the push branch is set; and the head branches with nothing left
        to propose (an open pull request of theirs is closed)."""
        if branch:
            update = self._apply(obj, root, refs, ctx)
            if update.files:
                return [(branch, dict(refs), update.result)], []
            return [], [branch]
        groups, settled = [], []
        for key, ref in refs.items():
            update = self._apply(obj, root, {key: ref}, ctx)
            head = f"{PULL_REQUEST_BRANCH_PREFIX}{key.split(':', 1)[1]}"
            if update.files:
                groups.append((head, {key: ref}, update.result))
            else:
                settled.append(head)
        return groups, settled

    async def _close_settled(self, prs: PullRequestClient, head: str, base: str) -> str | None:
        """Close the open pull request from ``head`` whose change the base already has (merged
        elsewhere, or written by hand): nothing is left to review."""
        try:
            found = await prs.find_open(head, base)
            if found is None:
                return None
            comment = f"The base branch '{base}' has this change already: nothing to propose."
            await prs.close(found.number, comment)
        except PullRequestError as err:
            raise ReconcileError(
                f"failed to close a settled pull request: {err}", reason=PULL_REQUEST_FAILED
            ) from None
        return f"closed pull request {found.url}: the base branch has its change"

    async def _push_proposal(
        self,
        obj: ImageUpdateAutomation,
        source: _Source,
        head: str,
        refs: Mapping[str, ImageRef],
        message: str,
        signing: git.SigningKey | None,
    ) -> str | None:
        """Branch ``head`` rebuilt from the base with one commit of ``refs``' changes, pushed
        over whatever it held: a bot's branch, as pull request bots keep theirs."""
        git_spec = obj.spec.git
        assert git_spec is not None
        with tempfile.TemporaryDirectory(prefix="automation-") as work:
            cloned = await self._clone(source, head, Path(work) / "head", reset_branch=True)
            update = self._apply(obj, cloned.path, refs)
            _write(cloned.path, obj, update)
            try:
                return await git.commit_and_push(
                    cloned,
                    author=git.Author(
                        git_spec.commit.author.email, git_spec.commit.author.name or ""
                    ),
                    message=message,
                    timeout=source.timeout,
                    signing=signing,
                    push_options=git_spec.push.options if git_spec.push else None,
                )
            except git.GitError as err:
                raise ReconcileError(
                    f"failed to update source: {err}", reason=GIT_OPERATION_FAILED
                ) from None

    def _push_branch(self, source: _Source, push: str | None) -> str:
        try:
            return git.push_branch(source.ref, push)
        except git.GitError as err:
            raise Stalling(str(err), reason=INVALID_SOURCE_CONFIG) from None

    async def _clone(
        self, source: _Source, branch: str, dest: Path, *, reset_branch: bool = False
    ) -> git.Cloned:
        try:
            return await git.clone(
                source.url,
                source.auth,
                proxy=source.proxy,
                ref=source.ref,
                branch=branch,
                dest=dest,
                timeout=source.timeout,
                reset_branch=reset_branch,
            )
        except git.GitError as err:
            raise ReconcileError(
                f"failed to checkout source: {err}", reason=GIT_OPERATION_FAILED
            ) from None

    def _apply(
        self,
        obj: ImageUpdateAutomation,
        root: Path,
        refs: Mapping[str, ImageRef],
        ctx: RunContext[AutomationRunState] | None = None,
    ) -> Update:
        """The setters' edits under ``update.path`` of the clone at ``root``; with ``ctx``, the
        files that could not be read as YAML are reported (a warning event)."""
        path = _update_root(obj, root)
        try:
            update = update_with_setters(path, refs)
        except (OSError, ValueError) as err:
            raise ReconcileError(f"failed to apply policies: {err}", reason=UPDATE_FAILED) from None
        if ctx is not None and update.problem_files:
            shown = ", ".join(update.problem_files[:MAX_PROBLEM_FILES])
            more = len(update.problem_files) - MAX_PROBLEM_FILES
            ctx.log.warning("files skipped", files=update.problem_files[:MAX_PROBLEM_FILES])
            ctx.warn(
                UPDATE_FAILED,
                "files with setter markers that are not valid YAML were left as they are: "
                + shown
                + (f" and {more} more" if more > 0 else ""),
            )
        return update

    async def _message(
        self, obj: ImageUpdateAutomation, changes: Changes, template: str | None
    ) -> str:
        """The commit message ``template`` (Flux's default when unset) renders."""
        git_spec = obj.spec.git
        assert git_spec is not None
        data = template_data(
            changes,
            namespace=obj.metadata.namespace or "",
            name=obj.metadata.name,
            values=git_spec.commit.message_template_values,
        )
        try:
            return await render_message(template or "", data)
        except CommitMessageError as err:
            removed = "which the API no longer has" in str(err)
            reason = REMOVED_TEMPLATE_FIELD if removed else INVALID_MESSAGE_TEMPLATE
            raise Stalling(f"failed to update source: {err}", reason=reason) from None

    async def _title(
        self,
        obj: ImageUpdateAutomation,
        pull_request: PullRequestSpec,
        changes: Changes,
        refs: Mapping[str, ImageRef],
        message: str,
    ) -> str:
        if pull_request.title:
            return await self._message(obj, changes, pull_request.title)
        if len(refs) == 1:
            (ref,) = refs.values()
            return f"Update {ref.name} to {ref.tag}"
        return message.strip().splitlines()[0] if message.strip() else "Update images"

    async def _host(
        self,
        ctx: RunContext[AutomationRunState],
        obj: ImageUpdateAutomation,
        source: _Source,
        pull_request: PullRequestSpec,
    ) -> Any:
        namespace = obj.metadata.namespace or ""
        try:
            secret = await read_secret(ctx.client, namespace, pull_request.secret_ref.name)
            return host_for(
                pull_request.provider,
                source.url,
                secret,
                address=pull_request.address,
                proxy=source.proxy,
            )
        except SecretError as err:
            raise ReconcileError(
                f"failed to propose the update: {err}", reason=PULL_REQUEST_FAILED
            ) from None
        except PullRequestError as err:
            raise Stalling(
                f"failed to propose the update: {err}", reason=INVALID_SOURCE_CONFIG
            ) from None

    async def _signing_key(
        self, ctx: RunContext[AutomationRunState], obj: ImageUpdateAutomation
    ) -> git.SigningKey | None:
        git_spec = obj.spec.git
        assert git_spec is not None
        key = git_spec.commit.signing_key
        if key is None:
            return None
        namespace = obj.metadata.namespace or ""
        try:
            data = await read_secret(ctx.client, namespace, key.secret_ref.name)
            return git.signing_key_from_secret(data, key.type, data.ref)
        except (SecretError, git.GitError) as err:
            raise ReconcileError(
                f"failed configuring source manager: {err}", reason=SOURCE_MANAGER_FAILED
            ) from None


def _update_root(obj: ImageUpdateAutomation, root: Path) -> Path:
    """``update.path`` inside the clone; a path that leaves it is refused."""
    relative = (obj.spec.update.path if obj.spec.update else None) or "."
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise Stalling(f"spec.update.path {relative!r} leaves the repository", reason=UPDATE_FAILED)
    if not path.exists():
        raise ReconcileError(
            f"failed to apply policies: spec.update.path {relative!r} does not exist in the "
            "repository",
            reason=UPDATE_FAILED,
        )
    return path


def _write(root: Path, obj: ImageUpdateAutomation, update: Update) -> None:
    base = _update_root(obj, root)
    for relative, content in update.files.items():
        (base / relative).write_bytes(content)


def _change_list(obj: ImageUpdateAutomation, changes: Changes) -> str:
    """The changes, for the pull request's body: what a reviewer checks, and what tells two
    proposals apart."""
    lines = [
        f"Proposed by ImageUpdateAutomation {obj.metadata.namespace}/{obj.metadata.name}:",
        "",
    ]
    for file, objects in sorted(changes.file_changes.items()):
        for target, items in sorted(objects.items()):
            what = "/".join(part for part in (target.namespace, target.name) if part)
            for change in items:
                lines.append(
                    f"- `{file}` {target.kind} {what}: `{change.old_value}` → `{change.new_value}`"
                )
    return "\n".join(lines)


def _same(title_a: str, title_b: str, body_a: str, body_b: str) -> bool:
    return title_a.strip() == title_b.strip() and same_text(body_a, body_b)


def _seconds(duration: str | None) -> float | None:
    return parse_duration(duration) if duration else None


def label_selector_query(selector: LabelSelector | None) -> str | None:
    """``policySelector`` as the API server's ``labelSelector`` query (metav1's
    ``LabelSelectorAsSelector``); ValueError for an expression it would refuse."""
    if selector is None:
        return None
    parts = [f"{key}={value}" for key, value in sorted((selector.match_labels or {}).items())]
    for expression in selector.match_expressions or []:
        values = sorted(expression.values or [])
        key, operator = expression.key, expression.operator
        if operator in ("In", "NotIn"):
            if not values:
                raise ValueError(f"{key}: for 'in', 'notin' operators, values set can't be empty")
            word = "in" if operator == "In" else "notin"
            parts.append(f"{key} {word} ({','.join(values)})")
        elif operator in ("Exists", "DoesNotExist"):
            if values:
                raise ValueError(f"{key}: values set must be empty for exists and does not exist")
            parts.append(key if operator == "Exists" else f"!{key}")
        else:
            raise ValueError(f"{operator!r} is not a valid label selector operator")
    return ",".join(parts) or None


def automations_of_changed_repository(
    old: dict[str, Any] | None, new: dict[str, Any] | None, automations: Any
) -> list[str]:
    """The automations of a GitRepository whose spec changed (URL, ref, credentials)."""
    if old is None or new is None or old.get("spec") == new.get("spec"):
        return []
    meta = new.get("metadata") or {}
    target = (meta.get("namespace"), meta.get("name"))
    keys = []
    for automation in automations:
        own = (automation.get("metadata") or {}).get("namespace")
        ref = (automation.get("spec") or {}).get("sourceRef") or {}
        if (ref.get("namespace") or own, ref.get("name")) == target:
            keys.append(object_key(automation))
    return keys


def automations_of_changed_policy(
    old: dict[str, Any] | None, new: dict[str, Any] | None, automations: Any
) -> list[str]:
    """The automations of a namespace whose ImagePolicy changed its latest image."""
    latest = [((o or {}).get("status") or {}).get("latestRef") for o in (old, new)]
    if latest[0] == latest[1]:
        return []
    changed = new if new is not None else old
    namespace = ((changed or {}).get("metadata") or {}).get("namespace")
    return [
        object_key(a)
        for a in automations
        if (a.get("metadata") or {}).get("namespace") == namespace
    ]
