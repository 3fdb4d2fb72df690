"""Every legato error survives pickling (process pools, Ray, the run store)."""

from __future__ import annotations

import pickle
from collections.abc import Callable

import pytest

import legato.errors as errors
from legato.errors import (
    AgentLimitReached,
    AmbiguousRunId,
    BudgetBusy,
    BudgetExceeded,
    EncryptionKeyError,
    ExpressionError,
    GuardrailBlocked,
    InvalidToolArguments,
    LeaseLost,
    LegatoError,
    MissingSecret,
    ModelError,
    OutputNotStorable,
    PipelineChanged,
    RunNotFound,
    RunNotResumable,
    SpecError,
    SpecIssue,
    StepError,
    ToolError,
    ToolFailed,
    UnknownTool,
    YamlSyntaxError,
)
from legato.server import GatewayError

# How to build an error whose constructor takes more than a message.
_BUILD: dict[str, Callable[[], BaseException]] = {
    "StepError": lambda: StepError("summarize", ValueError("no text")),
    "BudgetExceeded": lambda: BudgetExceeded("run", 0.5, 0.49, needed=0.02),
    "BudgetBusy": lambda: BudgetBusy("key:k1", 0.5, 0.3, needed=0.4),
    "LeaseLost": lambda: LeaseLost("run r1 is held by w2", owner="w2", expires_at=1700000000.5),
    "OutputNotStorable": lambda: OutputNotStorable(
        "step 'make' returned a _thread.lock", step="make", index=3, type_name="_thread.lock"
    ),
    "AmbiguousRunId": lambda: AmbiguousRunId("run id '01a2' matches 2 runs", candidates=["01a2aa", "01a2bb"]),
    "SpecError": lambda: SpecError(
        [SpecIssue("unknown step 'b'", file="p.yaml", line=3, column=7), SpecIssue("cycle: a -> a", path="steps.a")]
    ),
    "RunNotFound": lambda: RunNotFound("no run 'abc123'"),
    "GuardrailBlocked": lambda: GuardrailBlocked("the request contains personal data (PERSON)", entities=["PERSON"]),
    "EncryptionKeyError": lambda: EncryptionKeyError("store encryption key env:K is not set", ref="env:K"),
    "AgentLimitReached": lambda: AgentLimitReached("stopped after 3 turns", outcome="max_turns"),
    "ToolError": lambda: ToolError("failed", tool="refund", call_id="c1"),
    "ToolFailed": lambda: ToolFailed("the tool raised", tool="refund", call_id="c1"),
    "UnknownTool": lambda: UnknownTool("no tool named 'x'", tool="x"),
    "InvalidToolArguments": lambda: InvalidToolArguments("city: Field required", tool="weather", call_id="c2"),
    "RunNotResumable": lambda: RunNotResumable("run r1 is cancelled", status="cancelled"),
    "PipelineChanged": lambda: PipelineChanged("run r1 was started by version a", started="a", current="b"),
    "MissingSecret": lambda: MissingSecret("model m needs the environment variable K", variable="K"),
    "StepNotWaiting": lambda: errors.StepNotWaiting("step 'approve' of run r1 is not waiting", status="done"),
    "ExpressionError": lambda: ExpressionError("no field 'x'", expression="inputs.x", column=7),
    "YamlSyntaxError": lambda: YamlSyntaxError("invalid YAML: mapping values are not allowed", "p.yaml", 3, 9),
}

_CLASSES = sorted(
    name
    for name in errors.__all__
    if isinstance(getattr(errors, name), type) and issubclass(getattr(errors, name), BaseException)
)


def _build(name: str) -> BaseException:
    if name in _BUILD:
        return _BUILD[name]()
    cls = getattr(errors, name)
    if issubclass(cls, ModelError):
        model_error: ModelError = cls(
            "the provider said no",
            provider="openai",
            status=429,
            request_id="req_1",
            retry_after=2.5,
            code="rate_limit",
            retryable=False,
            model="gpt-x",
        )
        return model_error
    error: BaseException = cls(f"{name} happened")
    return error


def _tree(cls: type[BaseException]) -> set[str]:
    names = {cls.__name__} if cls.__module__ == errors.__name__ else set()
    for sub in cls.__subclasses__():
        names |= _tree(sub)
    return names


def test_every_exception_class_is_covered() -> None:
    # every class of the tree is exported (so the round trip below covers it)
    assert _tree(LegatoError) == set(_CLASSES)
    assert set(_BUILD) <= set(_CLASSES)


@pytest.mark.parametrize("name", _CLASSES)
def test_error_round_trips_through_pickle(name: str) -> None:
    error = _build(name)
    error.add_note("while testing")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.args == error.args
    assert vars(copy) == vars(error)
    assert copy.__notes__ == ["while testing"]


def test_step_error_keeps_its_fields() -> None:
    copy = pickle.loads(pickle.dumps(StepError("summarize", ValueError("no text"))))
    assert (copy.step, copy.error_type, copy.message) == ("summarize", "ValueError", "no text")
    assert str(copy) == "step 'summarize' failed: ValueError: no text"


def test_budget_and_spec_errors_keep_their_fields() -> None:
    budget = pickle.loads(pickle.dumps(BudgetExceeded("day", 10.0, 9.5, needed=1.0)))
    assert (budget.scope, budget.limit, budget.spent, budget.needed) == ("day", 10.0, 9.5, 1.0)
    spec = pickle.loads(pickle.dumps(SpecError([SpecIssue("bad", file="p.yaml", line=2, column=5)])))
    assert spec.issues == (SpecIssue("bad", file="p.yaml", line=2, column=5),)
    assert str(spec) == "p.yaml:2:5: bad"


def test_gateway_errors_are_legato_errors_and_keep_their_answer() -> None:
    error = GatewayError(429, "rate_limit", "slow down", code="budget_busy", headers={"Retry-After": "1"})
    assert isinstance(error, LegatoError)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.status, copy.kind, copy.message, copy.code, copy.headers) == (
        429,
        "rate_limit",
        "slow down",
        "budget_busy",
        {"Retry-After": "1"},
    )
    assert copy.body(anthropic=False) == error.body(anthropic=False)


def test_the_errors_other_modules_raise_are_in_the_tree() -> None:
    from legato.routing import ModelUnavailable as routing_unavailable
    from legato.spec import ExpressionError as spec_expression_error

    assert routing_unavailable is errors.ModelUnavailable
    assert spec_expression_error is ExpressionError
    assert issubclass(ExpressionError, errors.SpecError)
    assert issubclass(YamlSyntaxError, ValueError)
