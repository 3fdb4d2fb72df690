from __future__ import annotations

import json

import pytest

from legato.cost import CostEstimator, estimate_spec_cost
from legato.providers import ChatRequest, EmbedRequest, Message, ModelWrapper, Price, PricingTable
from legato.spec import load_spec

from ._doubles import PricedModel

TABLE = PricingTable({"openai/gpt-4o-mini": Price(input=0.15, output=0.6), "big": Price(input=10.0, output=30.0)})


def request(text: str, max_tokens: int | None = None) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=text)], max_tokens=max_tokens)


def test_chat_estimate_uses_max_tokens_and_the_table() -> None:
    estimator = CostEstimator(TABLE, default_output_tokens=100)
    bounded = estimator.chat(request("x" * 400, max_tokens=20), "openai/gpt-4o-mini")
    assert bounded.provider == "openai"
    assert bounded.model == "gpt-4o-mini"
    assert bounded.output_tokens == 20
    assert 100 <= bounded.input_tokens <= 120  # ~4 characters per token plus framing
    assert bounded.usd == pytest.approx((bounded.input_tokens * 0.15 + 20 * 0.6) / 1e6)
    unbounded = estimator.chat(request("x" * 400), "openai/gpt-4o-mini")
    assert unbounded.output_tokens == 100
    assert estimator.chat(request("hi"), "openai/unknown-model").usd is None
    # a dated snapshot is priced like its family
    assert estimator.chat(request("hi"), "openai/gpt-4o-mini-2024-07-18").usd is not None


def test_a_model_price_wins_over_the_table_and_wrappers_are_seen_through() -> None:
    model = PricedModel("big", price=Price(input=1.0, output=1.0))
    wrapped = ModelWrapper(ModelWrapper(model))
    estimate = CostEstimator(TABLE).chat(request("hi", max_tokens=10), wrapped)
    assert estimate.provider == "testprov"
    assert estimate.usd == pytest.approx((estimate.input_tokens + 10) * 1.0 / 1e6)
    embed = CostEstimator(TABLE).embed(EmbedRequest(inputs=["a" * 38]), model)
    assert embed.output_tokens == 0
    assert embed.usd == pytest.approx(embed.input_tokens / 1e6)


def test_shipped_table_prices_known_models() -> None:
    estimate = CostEstimator().chat(request("hello", max_tokens=100), "openai/gpt-4o-mini")
    assert estimate.usd is not None
    assert estimate.usd > 0


PIPELINE = """
name: review-digest
inputs:
  reviews: {type: list}
steps:
  fetch:
    uses: builtins:len
    with: {obj: "${inputs.reviews}"}
  classify:
    llm: openai/gpt-4o-mini
    map: ${inputs.reviews}
    prompt: "Classify the sentiment of this review as positive or negative: ${item}"
    max_tokens: 5
  entities:
    task: ner
    map: ${inputs.reviews}
    with: {text: "${item}"}
  summary:
    kind: llm
    model: big
    system: You summarise customer feedback for a product team.
    prompt: "Summarise: ${steps.classify}"
    loop: {until: "len(output) > 0", max_iterations: 2}
  mystery:
    kind: llm
    model: acme/unknown
    prompt: hello
"""


def test_plan_cost_per_step_and_total_with_assumptions() -> None:
    spec, _ = load_spec(PIPELINE)
    plan = estimate_spec_cost(spec, estimator=CostEstimator(TABLE, default_output_tokens=300), fan_out=20)
    steps = {s.step: s for s in plan.steps}
    assert steps["fetch"].usd == 0.0
    assert steps["fetch"].kind == "python"
    assert steps["entities"].usd == 0.0
    assert steps["entities"].calls == 20

    classify = steps["classify"]
    assert classify.calls == 20
    assert classify.output_tokens == 5
    assert classify.usd_per_call is not None
    assert classify.usd == pytest.approx(classify.usd_per_call * 20)
    # one ${...} reference counted at ref_tokens=200, plus the fixed text
    assert 210 < classify.input_tokens < 240

    summary = steps["summary"]
    assert summary.calls == 2  # loop upper bound
    assert summary.output_tokens == 300
    assert summary.usd == pytest.approx(2 * (summary.input_tokens * 10 + 300 * 30) / 1e6)

    assert steps["mystery"].usd is None
    assert plan.unpriced == ["mystery"]
    assert classify.usd is not None
    assert summary.usd is not None
    assert plan.total_usd == pytest.approx(classify.usd + summary.usd)
    text = "\n".join(plan.assumptions)
    for expected in ("20 items", "~200 tokens", "300 tokens", "max_iterations", "Python"):
        assert expected in text
    rendered = plan.render()
    assert "estimated total: $" in rendered
    assert "not priced (left out of the total): mystery" in rendered
    as_json = json.loads(json.dumps(plan.as_dict()))
    assert as_json["total_usd"] == pytest.approx(plan.total_usd)
    assert [s["step"] for s in as_json["steps"]] == ["fetch", "classify", "entities", "summary", "mystery"]


def test_plan_cost_rejects_a_bad_fan_out() -> None:
    spec, _ = load_spec(PIPELINE)
    with pytest.raises(ValueError, match="fan_out"):
        estimate_spec_cost(spec, fan_out=0)


def test_the_worst_case_of_a_group_is_its_dearest_model_and_a_cascade_adds_its_tiers() -> None:
    from legato.observe import Instrumented
    from legato.routing import Cascade, Fallbacks, Router

    cheap = PricedModel("cheap", price=Price(input=1.0, output=2.0))
    dear = PricedModel("dear", price=Price(input=10.0, output=20.0))
    unpriced = PricedModel("free", price=None)
    request = ChatRequest(messages=[Message(role="user", content="x" * 400)], max_tokens=100, model="group-alias")
    est = CostEstimator()
    one = est.chat(request.model_copy(update={"model": None}), dear).usd
    assert one is not None

    router = Router("g", [cheap, unpriced], fallbacks=Fallbacks(on_failure=[dear]))
    assert est.worst_case(request, Instrumented(router)) == pytest.approx(one)
    cascade = Cascade("c", [cheap, dear])
    cheap_one = est.chat(request.model_copy(update={"model": None}), cheap).usd or 0.0
    assert est.worst_case(request, cascade) == pytest.approx(one + cheap_one)
    assert est.worst_case(request, Router("u", [unpriced])) is None


def test_a_price_listed_on_a_deployment_counts_in_the_worst_case() -> None:
    from legato.routing import Deployment, Router

    unpriced = PricedModel("free", price=None)
    router = Router("g", [Deployment(unpriced, input_cost_per_mtok=1000.0, output_cost_per_mtok=1000.0)])
    request = ChatRequest(messages=[Message(role="user", content="hello")], max_tokens=10)
    worst = CostEstimator().worst_case(request, router)
    assert worst is not None
    assert worst >= 10 * 1000.0 / 1e6  # at least the 10 output tokens at $1,000 per million


def test_the_worst_case_is_planned_once_per_model_and_priced_per_request() -> None:
    """The walk over a group is kept per model object; what a request costs (its input,
    ``max_tokens``, chat or embeddings) is still worked out for each request."""
    from legato.routing import Fallbacks, Router

    cheap = PricedModel("cheap", price=Price(input=1.0, output=2.0))
    dear = PricedModel("dear", price=Price(input=10.0, output=20.0))
    router = Router("g", [cheap], fallbacks=Fallbacks(on_failure=[dear]))
    est = CostEstimator(default_output_tokens=50)
    for text, max_tokens in [("x" * 400, 100), ("y" * 40, None), ("z" * 4000, 7)]:
        chat = request(text, max_tokens)
        assert est.worst_case(chat, router) == pytest.approx(est.chat(chat, dear).usd)
        embed = EmbedRequest(inputs=[text])
        assert est.worst_case(embed, router) == pytest.approx(est.embed(embed, dear).usd)
    assert len(est._plans) == 1
    other = Router("g", [cheap])  # another object: its own plan
    assert est.worst_case(request("hi", 10), other) == pytest.approx(est.chat(request("hi", 10), cheap).usd)
    assert len(est._plans) == 2
