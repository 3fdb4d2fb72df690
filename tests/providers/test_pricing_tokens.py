from __future__ import annotations

import pytest

from legato.providers import (
    ChatRequest,
    EmbedRequest,
    ImagePart,
    Message,
    Price,
    PricingTable,
    TextPart,
    Tool,
    Usage,
    cost_of,
    default_pricing,
    estimate_tokens,
)


def test_shipped_table_is_dated_and_prices_known_models() -> None:
    table = default_pricing()
    assert table.as_of is not None
    assert table.lookup("openai", "gpt-4o-mini") == Price(input=0.15, output=0.6, cached_input=0.075)
    assert table.lookup("anthropic", "claude-3-5-haiku-latest") == table.lookup("anthropic", "claude-3-5-haiku")


def test_dated_snapshots_match_the_longest_prefix() -> None:
    table = default_pricing()
    assert table.lookup("openai", "gpt-4o-mini-2024-07-18") == table.lookup("openai", "gpt-4o-mini")
    assert table.lookup("openai", "gpt-4o-2024-11-20") == table.lookup("openai", "gpt-4o")
    assert table.lookup("openai", "gpt-4o-2024-11-20") != table.lookup("openai", "gpt-4o-mini")
    assert table.lookup("openai", "gpt-4omega") is None  # a prefix must end at a separator
    assert table.lookup("vllm", "gpt-4o") is None  # another provider's price is not borrowed
    assert table.lookup("azure", "gpt-4o") == table.lookup("openai", "gpt-4o")


def test_local_and_python_models_are_free() -> None:
    assert cost_of("local", "anything", Usage(input_tokens=10**6, output_tokens=10**6)) == 0.0


def test_cost_arithmetic_and_overrides() -> None:
    usage = Usage(input_tokens=2_000_000, output_tokens=1_000_000, cached_input_tokens=1_000_000)
    price = Price(input=1.0, output=2.0, cached_input=0.1)
    assert price.cost(usage) == pytest.approx(1.0 + 0.1 + 2.0)
    assert Price(input=1.0, output=2.0).cost(usage) == pytest.approx(2.0 + 2.0)  # cached defaults to input
    table = default_pricing().with_prices({"acme/fast": Price(input=5.0, output=5.0)})
    assert cost_of("acme", "fast", Usage(input_tokens=1_000_000), table=table) == pytest.approx(5.0)
    assert cost_of("openai", "gpt-4o", Usage(input_tokens=1_000_000), price=Price(input=9.0)) == pytest.approx(9.0)
    assert PricingTable({}).lookup("openai", "gpt-4o") is None


def test_estimates_grow_with_content_and_count_images_and_tools() -> None:
    short = ChatRequest(messages=[Message(role="user", content="hi")])
    long = ChatRequest(messages=[Message(role="user", content="hi " * 400)])
    image = ChatRequest(
        messages=[Message(role="user", content=[TextPart(text="hi"), ImagePart(url="https://x/y.png", detail="low")])]
    )
    tools = ChatRequest(messages=short.messages, tools=[Tool(name="t", description="d" * 400)])
    assert estimate_tokens(short) < estimate_tokens(long)
    assert estimate_tokens(image) >= estimate_tokens(short) + 85
    assert estimate_tokens(tools) > estimate_tokens(short) + 90
    text = "x" * 700
    assert estimate_tokens(ChatRequest(messages=[Message(role="user", content=text)]), "anthropic") > estimate_tokens(
        ChatRequest(messages=[Message(role="user", content=text)]), "openai"
    )
    assert estimate_tokens(EmbedRequest(inputs=["abcd" * 10, "abcd"]), "openai") == 11
