"""The bytes of streamed events, as the writers build them from per-stream templates."""

from __future__ import annotations

import json

from legato.errors import Overloaded
from legato.providers import ChatChunk, ToolCallDelta, Usage
from legato.server._anthropic_wire import StreamWriter
from legato.server._openai_wire import ChunkWriter


def _events(raw: bytes) -> list[dict[str, object]]:
    return [json.loads(part.removeprefix(b"data: ")) for part in raw.split(b"\n\n") if part and part != b"data: [DONE]"]


def test_openai_events_are_the_json_clients_expect() -> None:
    writer = ChunkWriter('a "quoted" model', include_usage=True)
    raw = writer.start() + writer.chunk(ChatChunk(text='tea\n"é" ☕'))
    raw += writer.chunk(ChatChunk(tool_calls=[ToolCallDelta(index=0, id="c1", name="f", arguments='{"a"')]))
    raw += writer.finish(None, Usage(input_tokens=3, output_tokens=4))
    events = _events(raw)
    assert raw.endswith(b"data: [DONE]\n\n")
    assert {e["id"] for e in events} == {events[0]["id"]}
    assert all(e["model"] == 'a "quoted" model' and e["object"] == "chat.completion.chunk" for e in events)
    deltas = [e["choices"][0] for e in events[:-1]]  # type: ignore[index]
    assert [d["delta"] for d in deltas] == [
        {"role": "assistant", "content": ""},
        {"content": 'tea\n"é" ☕'},
        {"tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": {"arguments": '{"a"', "name": "f"}}]},
        {},
    ]
    assert [d["finish_reason"] for d in deltas] == [None, None, None, "tool_calls"]
    assert events[-1]["choices"] == []
    assert events[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}


def test_text_that_utf8_cannot_carry_is_escaped_not_fatal() -> None:
    raw = ChunkWriter("m", include_usage=False).chunk(ChatChunk(text="a\ud800b"))
    assert json.loads(raw.removeprefix(b"data: "))["choices"][0]["delta"] == {"content": "a\ud800b"}
    raw = StreamWriter("m").chunk(ChatChunk(text="a\ud800b"))
    assert json.loads(raw.split(b"data: ")[-1])["delta"] == {"type": "text_delta", "text": "a\ud800b"}


def test_anthropic_text_deltas_follow_the_open_block() -> None:
    writer = StreamWriter("claude")
    raw = writer.start() + writer.chunk(ChatChunk(text="one "))
    raw += writer.chunk(ChatChunk(tool_calls=[ToolCallDelta(index=0, id="t1", name="f", arguments="{}")]))
    raw += writer.chunk(ChatChunk(text="two"))
    raw += writer.finish("stop", Usage(output_tokens=2))
    kinds = [line.removeprefix(b"event: ").decode() for line in raw.split(b"\n") if line.startswith(b"event: ")]
    assert kinds == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    deltas = _events(b"\n\n".join(p.split(b"\n", 1)[1] for p in raw.split(b"\n\n") if p))
    texts = [(e["index"], e["delta"]) for e in deltas if e["type"] == "content_block_delta"]
    assert texts == [
        (0, {"type": "text_delta", "text": "one "}),
        (1, {"type": "input_json_delta", "partial_json": "{}"}),
        (2, {"type": "text_delta", "text": "two"}),
    ]


def test_errors_in_each_format() -> None:
    exc = Overloaded("busy", provider="openai")
    assert _events(ChunkWriter("m", include_usage=False).error(exc))[0]["error"]["code"] == "overloaded"  # type: ignore[index]
    assert (
        StreamWriter("m")
        .error(exc)
        .startswith(b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error"')
    )
