"""The ``llm:`` step kind: call a named model from a YAML pipeline.

::

    steps:
      summary:
        llm: fast                        # a name from legato.yaml (models or groups) or provider/model
        system: You are a terse analyst.
        prompt: |
          Summarise in two sentences:
          ${steps.text}
        temperature: 0.2
        max_tokens: 200
        response_cache: false            # never answer this step from a response cache

      verdict:
        llm: fast
        prompt: "Is this spam? ${inputs.message}"
        schema:                          # optional: the answer is parsed as JSON and validated
          type: object
          properties: {spam: {type: boolean}, reason: {type: string}}
          required: [spam]

Without ``schema`` the step's output is ``{text, model, provider, finish_reason,
usage, cost, degraded, tier}``; with it, the parsed JSON value. ``${...}`` references
in ``prompt`` and ``system`` make the step's dependencies; a reference that is the
whole value and yields a non-string is sent as JSON. An answer that does not match
the schema raises ``MalformedResponse`` (retryable, so ``retries:`` re-asks).

``response_cache`` speaks to a :class:`~legato.cache.ResponseCache` around the model
(one added by a resolver, see :func:`legato.models.add_resolver`, or by any wrapper
that reads ``request.metadata``): ``true`` (the default) lets it answer,
``false`` bypasses it (``metadata["cache"] = False``), ``refresh`` skips the lookup
but stores the fresh answer. It is not the step option ``cache:``, which memoizes the
step's output.

The model is resolved when the pipeline is loaded (an unknown name is a spec error
with file:line) and built on the step's first call in a run: the run owns it
(:func:`legato.engine.run_resources`), so every ``llm:`` and ``agent:`` step and map
item of the run that names the same model shares one model and its connection pool,
closed when the run ends. Outside a run (a step on a remote executor's worker) a
call builds its own model and closes it after.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from legato.config import LegatoConfig
from legato.engine import TokenSink, run_resources, token_sink
from legato.errors import BadRequest, ConfigError, MalformedResponse, MissingSecret, SpecError, SpecIssue
from legato.expressions import closest
from legato.providers import ChatRequest, ChatResponse, Message, Model, ResponseFormat
from legato.providers._assemble import StreamAssembler
from legato.providers._validate import check_json_schema
from legato.spec import BuildContext, StepBuild
from legato.spec._models import KIND_COMMON_KEYS

__all__ = ["build"]

_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


class LlmStep(BaseModel):
    """The ``llm`` step's own keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    llm: str | None = None
    model: str | None = None
    prompt: Any
    system: Any = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    schema_name: str = Field(default="response", pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    stop: list[str] | None = None
    seed: int | None = None
    response_cache: bool | Literal["refresh"] = True
    guardrail: str | None = None  # a registered guardrail (pii-mask, pii-redact, pii-block) around the model


def check_guardrail(name: str | None, ctx: BuildContext) -> None:
    """A step's ``guardrail:`` must name a registered guardrail."""
    from legato.guardrails import names

    if name is not None and name not in names():
        raise SpecError([ctx.issue(f"unknown guardrail {name!r}; known: {', '.join(names())}", "guardrail")])


def guarded(model: Model, guardrail: str | None) -> Model:
    """``model`` behind the step's guardrail, if it names one."""
    if guardrail is None:
        return model
    from legato.guardrails import apply

    return apply(guardrail, model)


@asynccontextmanager
async def step_model(name: str, config: LegatoConfig, guardrail: str | None) -> AsyncIterator[Model]:
    """The model a step calls (see the module docstring for who owns it): each call
    reported to the run (model, deployment, timings, prompt and answer: what the run
    store keeps and the dashboard shows) when the run has subscribers, behind the step's
    guardrail (so the prompt kept is the one the model saw)."""
    import legato.models

    resources = run_resources()
    if resources is None:
        model = legato.models.get(name, config)
    else:
        key = ("llm-model", name, config.source, id(config))
        model = resources.get(key, lambda: legato.models.get(name, config), _aclose)
    try:
        yield _for_step(model, guardrail)
    finally:
        if resources is None:
            await model.aclose()


def _for_step(model: Model, guardrail: str | None) -> Model:
    """``model`` as this step attempt calls it: reported to the run, behind the guardrail."""
    from legato.engine import model_call_sink

    sink = model_call_sink()
    if sink is not None:
        from legato.observe import Recorded

        model = Recorded(model, lambda call: sink(call.as_dict()))
    return guarded(model, guardrail)


async def _aclose(model: Model) -> None:
    await model.aclose()


def build(spec: Mapping[str, Any], ctx: BuildContext) -> StepBuild:
    """Build an ``llm:`` step (the factory the spec loader calls)."""
    own = {k: v for k, v in spec.items() if k not in KIND_COMMON_KEYS}
    try:
        step = LlmStep.model_validate(own)
    except ValidationError as exc:
        raise SpecError(own_field_issues(exc, ctx, LlmStep)) from None
    name = step.llm or step.model
    where = "llm" if step.llm else "model"
    if not name:
        raise SpecError([ctx.issue("an llm step needs 'llm: MODEL' (a name from legato.yaml or provider/model)")])
    if step.llm and step.model and step.llm != step.model:
        raise SpecError([ctx.issue("give the model once, as 'llm:' or 'model:'", "model")])
    check_guardrail(step.guardrail, ctx)
    if step.schema_ is not None:
        try:
            check_json_schema(step.schema_, "schema")
        except BadRequest as exc:
            raise SpecError([ctx.issue(exc.message, "schema")]) from exc
    _probe(name, ctx.config, ctx, where)

    async def llm(prompt: Any, system: Any = None) -> Any:
        return await _call(name, ctx.config, step, prompt, system)

    llm.__name__ = llm.__qualname__ = f"llm_{ctx.step}"
    args: dict[str, Any] = {"prompt": step.prompt}
    if step.system is not None:
        args["system"] = step.system
    return StepBuild(fn=llm, args=args, depends_on=tuple(spec.get("depends_on") or ()), description=f"llm ({name})")


def own_field_issues(exc: ValidationError, ctx: BuildContext, model: type[BaseModel]) -> list[SpecIssue]:
    """A kind's own fields in error, located: an unknown field with the closest known one
    (whose "missing" error it explains is then left out), other errors as pydantic words them."""
    known = sorted({*(f.alias or n for n, f in model.model_fields.items()), *KIND_COMMON_KEYS})
    errors = exc.errors()
    typos = {str(e["loc"][0]): closest(str(e["loc"][0]), known) for e in errors if e["type"] == "extra_forbidden"}
    explained = {hint for hint in typos.values() if hint}
    issues = []
    for err in errors:
        loc = tuple(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            hint = typos[loc[0]]
            issues.append(ctx.issue(f"unknown field {loc[0]!r}" + (f" (did you mean {hint!r}?)" if hint else ""), *loc))
        elif err["type"] == "missing" and loc and loc[0] in explained:
            continue
        else:
            issues.append(ctx.issue(f"{'.'.join(loc) or 'step'}: {err['msg']}", *loc[:1]))
    return issues


def _probe(name: str, config: LegatoConfig, ctx: BuildContext, where: str) -> None:
    import legato.models

    try:
        legato.models.get(name, config)
    except MissingSecret as exc:
        if ctx.check_secrets:
            raise SpecError([ctx.issue(str(exc), where)]) from exc
    except ConfigError as exc:
        raise SpecError([ctx.issue(str(exc), where)]) from exc


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def request_for(step: LlmStep, prompt: Any, system: Any) -> ChatRequest:
    messages = []
    if system is not None:
        messages.append(Message(role="system", content=_text(system)))
    messages.append(Message(role="user", content=_text(prompt)))
    response_format = None
    if step.schema_ is not None:
        response_format = ResponseFormat(type="json_schema", json_schema=step.schema_, name=step.schema_name)
    return ChatRequest(
        messages=messages,
        temperature=step.temperature,
        max_tokens=step.max_tokens,
        stop=step.stop,
        seed=step.seed,
        response_format=response_format,
        metadata={} if step.response_cache is True else {"cache": step.response_cache},
    )


async def _call(name: str, config: LegatoConfig, step: LlmStep, prompt: Any, system: Any) -> Any:
    request = request_for(step, prompt, system)
    sink = token_sink()
    async with step_model(name, config, step.guardrail) as model:
        response = await model.chat(request) if sink is None else await _streamed(model, request, sink)
    if step.schema_ is None:
        return _output(response)
    return parse_structured(response, step.schema_)


async def _streamed(model: Model, request: ChatRequest, sink: TokenSink) -> ChatResponse:
    """Stream the call, handing each piece of text to ``sink`` as it arrives; the
    response assembled from the chunks equals what ``chat`` returns."""
    assembler = StreamAssembler()
    async for chunk in model.stream(request):
        assembler.add(chunk)
        if chunk.text:
            sink(chunk.text)
    return assembler.response(model=model.name, provider=getattr(model, "provider", ""))


def _output(response: ChatResponse) -> dict[str, Any]:
    return {
        "text": response.text,
        "model": response.model,
        "provider": response.provider,
        "finish_reason": response.finish_reason,
        "usage": response.usage.model_dump(),
        "cost": response.cost,
        "degraded": response.degraded,
        "tier": response.tier,
    }


def parse_structured(response: ChatResponse, schema: dict[str, Any]) -> Any:
    """The answer's JSON value, validated against ``schema``."""
    import importlib

    text = response.text.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise MalformedResponse(
            f"the answer is not JSON ({exc}): {text[:200]!r}", provider=response.provider, model=response.model
        ) from None
    validators: Any = importlib.import_module("jsonschema.validators")
    validator = validators.validator_for(schema)(schema)
    problems = sorted(validator.iter_errors(value), key=lambda e: list(e.path))
    if problems:
        first = problems[0]
        at = "/".join(str(p) for p in first.path) or "the top level"
        raise MalformedResponse(
            f"the answer does not match the schema at {at}: {first.message}",
            provider=response.provider,
            model=response.model,
        )
    return value
