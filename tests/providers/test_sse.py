"""The SSE decoder: any chunking of a stream decodes to the same events."""

from __future__ import annotations

import itertools
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from legato.providers import ServerSentEvent, SSEDecoder, ToolCall, Usage
from legato.testing import _wire as wire

TRICKY = (
    ": a comment line\r\n"
    "event: message_start\r\n"
    'data: {"text": "Grüße, 世界 🎻"}\r\n'
    "\r\n"
    "data: first line\n"
    "data: second line\n"
    "data:no space\n"
    "id: 42\n"
    "retry: 1500\n"
    "\n"
    ":keep-alive\r"
    "data: cr only\r"
    "\r"
    "event: empty-ignored\n"
    "\n"
    "data: [DONE]\n\n"
).encode()

EXPECTED = [
    ServerSentEvent(data='{"text": "Grüße, 世界 🎻"}', event="message_start"),
    ServerSentEvent(data="first line\nsecond line\nno space", id="42", retry=1500),
    ServerSentEvent(data="cr only", id="42"),
    ServerSentEvent(data="[DONE]", id="42"),
]


def recorded_streams() -> list[bytes]:
    answer = wire.Answer(
        id="x",
        model="m",
        text="Zürich ☀️ — “quoted” text with émojis 🎉 and\nnewlines",
        tool_calls=(ToolCall(id="c", name="f", arguments='{"city": "Zürich", "note": "a\\"b"}'),),
        finish_reason="tool_calls",
        usage=Usage(input_tokens=5, output_tokens=9),
        chunk_chars=3,
        created=0,
    )
    openai = b"".join(wire.openai_stream(answer, include_usage=True)) + wire.OPENAI_DONE
    anthropic = b"".join(wire.anthropic_stream(answer)) + wire.ANTHROPIC_STOP_EVENT
    tgi = b"".join(wire.tgi_stream(answer))
    return [TRICKY, openai, anthropic, tgi, openai.replace(b"\n", b"\r\n")]


def decode(chunks: list[bytes]) -> tuple[list[ServerSentEvent], bool]:
    decoder = SSEDecoder()
    events = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    events.extend(decoder.close())
    return events, decoder.pending


def random_chunks(body: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(body)), k=min(len(body) - 1, rng.randint(1, 40))))
    edges = [0, *cuts, len(body)]
    return [body[a:b] for a, b in itertools.pairwise(edges)]


def test_tricky_stream_follows_the_spec() -> None:
    events, pending = decode([TRICKY])
    assert events == EXPECTED
    assert not pending


def test_ten_thousand_random_chunkings_decode_identically() -> None:
    rng = random.Random(20240601)
    streams = recorded_streams()
    references = [decode([body])[0] for body in streams]
    for reference in references:
        assert reference  # every recorded stream has events
    for i in range(10_000):
        index = i % len(streams)
        events, pending = decode(random_chunks(streams[index], rng))
        assert events == references[index], f"chunking #{i} of stream {index}"
        assert not pending


def test_every_single_byte_split_of_a_multibyte_character() -> None:
    body = 'data: "🎻é"\n\n'.encode()
    for cut in range(1, len(body)):
        assert decode([body[:cut], body[cut:]])[0] == [ServerSentEvent(data='"🎻é"')]
    assert decode([bytes([b]) for b in body])[0] == [ServerSentEvent(data='"🎻é"')]


def test_a_crlf_split_after_its_cr_keeps_the_blank_line_that_follows() -> None:
    assert decode([b"data: x\r", b"\n", b"\n", b"data: y\n\n"])[0] == [ServerSentEvent("x"), ServerSentEvent("y")]
    assert decode([b"data: x\r", b"\n\n"])[0] == [ServerSentEvent("x")]


def test_byte_order_mark_at_the_start_is_ignored() -> None:
    body = "\ufeffdata: x\n\n".encode()
    for cut in range(1, 4):  # the BOM itself split across chunks
        assert decode([body[:cut], body[cut:]])[0] == [ServerSentEvent(data="x")]


def test_cut_stream_is_pending() -> None:
    events, pending = decode([b"data: complete\n\ndata: cut in the mid"])
    assert events == [ServerSentEvent(data="complete")]
    assert pending
    _, pending_after_field = decode([b"data: no blank line yet\n"])
    assert pending_after_field


def test_data_payloads_reassemble_byte_identically() -> None:
    stream = recorded_streams()[1]
    rng = random.Random(7)
    whole = [e.data for e in decode([stream])[0]]
    joined = "\n\n".join("data: " + d for d in whole) + "\n\n"
    assert joined.encode() == stream
    for _ in range(200):
        assert [e.data for e in decode(random_chunks(stream, rng))[0]] == whole


_LINE_TEXT = st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs"]), max_size=20)


@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(
        st.tuples(
            st.lists(_LINE_TEXT, min_size=1, max_size=3),
            st.sampled_from(["", "message_start", "content_block_delta", "ping"]),
        ),
        min_size=1,
        max_size=6,
    ),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    comment=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_fuzzed_streams_round_trip(events: list[tuple[list[str], str]], newline: str, comment: bool, seed: int) -> None:
    text = ""
    for lines, name in events:
        if comment:
            text += ": keep-alive" + newline
        if name:
            text += f"event: {name}{newline}"
        text += "".join(f"data: {line}{newline}" for line in lines) + newline
    body = text.encode()
    expected = [ServerSentEvent(data="\n".join(lines), event=name or "message") for lines, name in events]
    decoded, pending = decode(random_chunks(body, random.Random(seed)) if len(body) > 1 else [body])
    assert decoded == expected
    assert not pending
