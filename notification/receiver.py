"""The Receiver reconciler: checks the spec, reads the token, publishes the webhook path.

As Flux's receiver reconciler (``internal/controller/receiver_controller.go``): a spec that
cannot work stalls (a CEL filter that does not compile: ``InvalidCELExpression``; other
configuration errors: ``ValidationFailed``; a resource in another namespace under
``--no-cross-namespace-refs``: ``AccessDenied``); a missing Secret or ``token`` key is
``TokenNotFound``, retried; otherwise ``status.webhookPath`` is ``/hook/`` +
sha256(token + name + namespace) and ``Ready`` says "Receiver initialized for path: ...".

Unlike Flux, the checks Flux's receiver server only makes when a request comes (``*`` without
``matchLabels``, cross-namespace resources) stall the Receiver up front, ``matchLabels`` with a
name other than ``*`` (which Flux ignores) is refused rather than ignored, an empty token is
refused (it would make a guessable path, or an HMAC keyed by nothing), and the ``gcr`` type
is refused with a message saying so (``generic-oidc`` with Google's issuer does its job with
every claim checked). A ``generic-oidc`` Receiver has no Secret: its path is
sha256(name + namespace), and its requests carry an OIDC token (``notification.oidc``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from controllers.cel import INVALID_CEL_EXPRESSION, TERMINAL_ERROR_MESSAGE, InvalidExpression
from controllers.cel import compile_expression as compile_cel
from controllers.kube import KubeClient
from controllers.reconcile import ReconcileError, Reconciler, Result, RunContext, Stalling, Step
from controllers.secrets import SecretError, SecretNotFound, read_secret
from notification.api_v1 import Receiver, webhook_path

__all__ = [
    "ACCESS_DENIED",
    "TOKEN_NOT_FOUND",
    "VALIDATION_FAILED",
    "ReceiverReconciler",
    "TokenError",
    "receiver_token",
    "spec_problem",
]

# Flux's condition reasons (notification-controller api/v1, fluxcd/pkg apis/acl).
TOKEN_NOT_FOUND = "TokenNotFound"  # noqa: S105 - a condition reason
VALIDATION_FAILED = "ValidationFailed"
ACCESS_DENIED = "AccessDenied"

# Types weir refuses: accepted by the CRD, so a clear refusal instead of a silent no-op.
UNSUPPORTED_TYPES = {
    "gcr": (
        "receiver type 'gcr' is not supported by weir: it does not verify Google's ID tokens; "
        "use type 'generic-oidc' with the issuer https://accounts.google.com and validations "
        "of the service account's email"
    ),
}


class TokenError(Exception):
    """The Receiver's token cannot be read; the message names the Secret, never a value."""


async def receiver_token(client: KubeClient, obj: Receiver) -> str:
    """The ``token`` of the Receiver's Secret ('' for a type without one)."""
    ref = obj.spec.secret_ref
    if ref is None:
        return ""
    namespace = obj.metadata.namespace or ""
    where = f"{namespace}/{ref.name}"
    try:
        data = await read_secret(client, namespace, ref.name)
        if "token" not in data:
            raise TokenError(f"invalid '{where}' secret data: required field 'token'")
        token = data.text("token")
    except SecretNotFound as err:
        raise TokenError(f"unable to read token from secret '{where}': not found") from err
    except SecretError as err:
        raise TokenError(f"unable to read token from secret '{where}': {err.detail}") from err
    if not token:
        raise TokenError(f"invalid '{where}' secret data: field 'token' is empty")
    return token


@dataclass
class ReceiverRunState:
    """Nothing passes between the steps: each reads the object."""


def _oidc_problem(obj: Receiver) -> str | None:
    """Flux's cross-field rules on ``type``, ``secretRef`` and ``oidcProviders``."""
    spec = obj.spec
    oidc = spec.type == "generic-oidc"
    if oidc and not spec.oidc_providers:
        return "generic-oidc receiver requires at least one oidcProvider"
    if not oidc and spec.oidc_providers:
        return "oidcProviders can only be set when type is generic-oidc"
    if oidc and spec.secret_ref is not None:
        return "secretRef cannot be set when type is generic-oidc"
    if not oidc and spec.secret_ref is None:
        return "secretRef is required when type is not generic-oidc"
    return None


def _oidc_providers_problem(obj: Receiver) -> str | None:
    """Flux's ValidateOIDCProvidersSpec beyond what the CRD's schema holds: one entry per
    issuer, every variable named."""
    seen: set[str] = set()
    for index, provider in enumerate(obj.spec.oidc_providers or []):
        if provider.issuer_url in seen:
            return f"oidcProviders[{index}]: duplicate issuerURL '{provider.issuer_url}'"
        seen.add(provider.issuer_url)
        for position, variable in enumerate(provider.variables or []):
            if not variable.name or not variable.expression:
                return (
                    f"oidcProviders[{index}] (issuerURL='{provider.issuer_url}'): "
                    f"variables[{position}]: name and expression are required"
                )
        for position, validation in enumerate(provider.validations):
            if not validation.expression or not validation.message:
                return (
                    f"oidcProviders[{index}] (issuerURL='{provider.issuer_url}'): "
                    f"validations[{position}]: expression and message are required"
                )
    return None


def _oidc_cel_problem(obj: Receiver) -> str | None:
    for index, provider in enumerate(obj.spec.oidc_providers or []):
        where = f"oidcProviders[{index}] (issuerURL='{provider.issuer_url}')"
        for variable in provider.variables or []:
            try:
                compile_cel(variable.expression)
            except InvalidExpression as err:
                return f"{where}: invalid expression for variable '{variable.name}': {err}"
        for validation in provider.validations:
            try:
                compile_cel(validation.expression)
            except InvalidExpression as err:
                return f"{where}: invalid expression for validation '{validation.message}': {err}"
    return None


def _cel_problem(obj: Receiver) -> str | None:
    spec = obj.spec
    if spec.resource_filter:
        try:
            compile_cel(spec.resource_filter)
        except InvalidExpression as err:
            return f"invalid resourceFilter expression: {err}"
    for index, resource in enumerate(spec.resources):
        if not resource.filter:
            continue
        try:
            compile_cel(resource.filter)
        except InvalidExpression as err:
            return (
                f'invalid filter expression for resources[{index}] (kind="{resource.kind}", '
                f'name="{resource.name}"): {err}'
            )
    return None


def _selection_problem(obj: Receiver) -> str | None:
    for index, resource in enumerate(obj.spec.resources):
        where = f'resources[{index}] (kind="{resource.kind}", name="{resource.name}")'
        if resource.name == "*" and resource.match_labels is None:
            return f"{where}: matchLabels is required when the name is '*'"
        if resource.name != "*" and resource.match_labels is not None:
            return f"{where}: matchLabels selects objects only when the name is '*'"
    return None


def _cross_namespace_problem(obj: Receiver) -> str | None:
    own = obj.metadata.namespace
    for resource in obj.spec.resources:
        namespace = resource.namespace or own
        if namespace != own:
            return (
                f"can't access '{resource.kind}/{namespace}/{resource.name}', "
                "cross-namespace references have been blocked"
            )
    return None


def spec_problem(obj: Receiver, *, no_cross_namespace_refs: bool) -> tuple[str, str] | None:
    """The first reason the Receiver's spec cannot work, as ``(reason, message)``; None if
    it can."""
    unsupported = UNSUPPORTED_TYPES.get(obj.spec.type)
    if unsupported is not None:
        return VALIDATION_FAILED, unsupported
    problem = _oidc_problem(obj)
    if problem is not None:
        return VALIDATION_FAILED, problem
    problem = _cel_problem(obj)
    if problem is not None:
        return INVALID_CEL_EXPRESSION, problem
    problem = _oidc_providers_problem(obj)
    if problem is not None:
        return VALIDATION_FAILED, problem
    problem = _oidc_cel_problem(obj)
    if problem is not None:
        return INVALID_CEL_EXPRESSION, problem
    problem = _selection_problem(obj)
    if problem is not None:
        return VALIDATION_FAILED, problem
    if no_cross_namespace_refs:
        problem = _cross_namespace_problem(obj)
        if problem is not None:
            return ACCESS_DENIED, problem
    return None


class ReceiverReconciler(Reconciler[Receiver, ReceiverRunState]):
    """Reconciles Receivers: a valid spec and a readable token give a webhook path."""

    model = Receiver
    owned_conditions: tuple[str, ...] = ()

    def __init__(self, *, no_cross_namespace_refs: bool) -> None:
        self.no_cross_namespace_refs = no_cross_namespace_refs

    @property
    def steps(self) -> Sequence[Step[Receiver, ReceiverRunState]]:
        return [self.check_spec, self.publish_path]

    def new_state(self) -> ReceiverRunState:
        return ReceiverRunState()

    async def finalize(self, ctx: RunContext[ReceiverRunState], obj: Receiver) -> None:
        """A Receiver owns nothing outside itself."""

    async def check_spec(self, ctx: RunContext[ReceiverRunState], obj: Receiver) -> Result:
        """Stall a spec that cannot work, before anything is read."""
        problem = spec_problem(obj, no_cross_namespace_refs=self.no_cross_namespace_refs)
        if problem is not None:
            reason, message = problem
            obj.status.webhook_path = None
            raise Stalling(f"{TERMINAL_ERROR_MESSAGE}: {message}", reason=reason)
        return Result()

    async def publish_path(self, ctx: RunContext[ReceiverRunState], obj: Receiver) -> Result:
        """Read the token and record the webhook path it gives."""
        try:
            token = await receiver_token(ctx.client, obj)
        except TokenError as err:
            obj.status.webhook_path = None
            raise ReconcileError(str(err), reason=TOKEN_NOT_FOUND) from err
        path = webhook_path(token, obj.metadata.name, obj.metadata.namespace or "")
        obj.status.webhook_path = path
        return Result(message=f"Receiver initialized for path: {path}")
