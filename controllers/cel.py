"""CEL expressions, compiled and evaluated as fluxcd/pkg ``runtime/cel`` does.

In the runtime because several controllers evaluate them: kustomize-controller's
``healthCheckExprs`` and ``dependsOn`` ``readyExpr``, notification-controller's Provider
``commitStatusExpr`` and Receiver ``resourceFilter``, helm-controller's ``readyExpr``.

The language is the ``common-expression-language`` package (cel-rust): its equality and
numeric comparisons across types, its ``has()`` checks and its parse errors follow cel-go,
Flux's implementation. Flux's expressions also get cel-go's strings, sets and encoders
extensions, added here from the package's own library. Flux type-checks a readyExpr before
evaluating it; here an undeclared name or a result that is not a bool is an evaluation error.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import cel

__all__ = [
    "INVALID_CEL_EXPRESSION",
    "TERMINAL_ERROR_MESSAGE",
    "CelError",
    "EvaluationError",
    "Expression",
    "InvalidExpression",
    "compile_expression",
]

# Flux's condition reason for an expression that does not compile (fluxcd/pkg apis/meta), and
# the prefix Flux's controllers give the message of an object they stall for one.
INVALID_CEL_EXPRESSION = "InvalidCELExpression"
TERMINAL_ERROR_MESSAGE = "Reconciliation failed terminally due to configuration error"

# Compiled programs are immutable: one per distinct expression text is enough.
CACHE_SIZE = 256


@functools.cache
def _functions() -> dict[str, Callable[..., Any]]:
    """cel-go's strings, sets and encoders extensions, and the ``first()``/``last()`` list
    methods of its optional types (Flux's environment has ``cel.OptionalTypes()``; its docs'
    ``commitStatusExpr`` example calls ``split('-').first().value()``)."""
    from cel.stdlib import EXTENSIONS

    functions = {
        name: function
        for library in ("strings", "sets", "encoders")
        for name, function in EXTENSIONS[library].items()
    }
    functions |= {name: EXTENSIONS["lists"][name] for name in ("first", "last")}
    return functions


# Errors the evaluation of a valid expression raises on data it cannot handle.
_EVALUATION_ERRORS = (LookupError, ArithmeticError, TypeError, ValueError, RuntimeError)


class CelError(Exception):
    """A CEL expression that does not compile or cannot be evaluated."""


class InvalidExpression(CelError):
    """The expression does not compile: a configuration error, no retry fixes it."""


class EvaluationError(CelError):
    """The expression could not be evaluated on these variables."""


class Expression:
    """A compiled expression; see ``compile_expression``."""

    def __init__(self, source: str, program: cel.Program) -> None:
        self.source = source
        self._program = program

    def evaluate_bool(self, variables: Mapping[str, Any]) -> bool:
        """The expression's value with ``variables`` bound; ``EvaluationError`` when it
        fails (a missing key, an unknown name, mismatched types) or is not a bool."""
        value = self._evaluate(variables)
        if not isinstance(value, bool):
            raise EvaluationError(f"failed to evaluate CEL expression as boolean: '{self.source}'")
        return value

    def evaluate_string(self, variables: Mapping[str, Any]) -> str:
        """The expression's value with ``variables`` bound, as ``evaluate_bool`` but for an
        expression that must give a string (a Provider's ``commitStatusExpr``)."""
        value = self._evaluate(variables)
        if not isinstance(value, str):
            raise EvaluationError(f"failed to evaluate CEL expression as string: '{self.source}'")
        return value

    def evaluate(self, variables: Mapping[str, Any]) -> Any:
        """The expression's value, of whatever type, with ``variables`` bound (a Receiver's
        OIDC ``variables``); ``EvaluationError`` when it fails."""
        return self._evaluate(variables)

    def _evaluate(self, variables: Mapping[str, Any]) -> Any:
        import cel

        context = cel.Context(variables=dict(variables), functions=_functions())
        try:
            return self._program.execute(context)
        except KeyError as err:
            # cel-rust raises a bare KeyError; cel-go's words say what it is.
            raise self._failed(f"no such key: {err.args[0] if err.args else ''}") from err
        except _EVALUATION_ERRORS as err:
            raise self._failed(str(err)) from err

    def _failed(self, why: str) -> EvaluationError:
        return EvaluationError(f"failed to evaluate the CEL expression '{self.source}': {why}")


@functools.lru_cache(maxsize=CACHE_SIZE)
def compile_expression(source: str) -> Expression:
    """``source`` compiled, or ``InvalidExpression`` with Flux's message and the parser's
    position of the error."""
    # The package weighs about 28 MiB (its command line's dependencies included): imported by
    # the first expression, not by a controller whose objects have none.
    import cel

    try:
        program = cel.compile(source)
    except (ValueError, RuntimeError) as err:
        # cel-rust repeats the expression before cel-go's issue list; Flux's words do it once.
        issues = str(err).removeprefix(f"Failed to parse expression '{source}': ")
        raise InvalidExpression(f"failed to parse the CEL expression '{source}': {issues}") from err
    return Expression(source, program)
