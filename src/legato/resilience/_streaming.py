"""The one rule every wrapper follows for streams.

Before the first token reached the caller, a failed stream is like a failed call:
it may be retried or sent elsewhere. After it, the caller has seen part of an
answer, so a failure becomes :class:`StreamInterrupted` with ``retryable=False``
and nothing is retried or spliced. A stream never ends cleanly after a failure.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from legato.errors import ModelError, StreamInterrupted
from legato.providers import ChatChunk, close_stream

__all__ = ["close_stream", "interrupted", "open_stream"]


def interrupted(error: BaseException, source: str) -> StreamInterrupted:
    """The error to raise when a stream fails after its first chunk."""
    if isinstance(error, StreamInterrupted) and not error.retryable:
        return error
    if isinstance(error, ModelError):
        return StreamInterrupted(
            f"stream from {source} failed after the first chunk: {type(error).__name__}: {error.message}",
            provider=error.provider,
            status=error.status,
            request_id=error.request_id,
            code=error.code,
            model=error.model,
            retryable=False,
        )
    return StreamInterrupted(
        f"stream from {source} failed after the first chunk: {type(error).__name__}: {error}",
        retryable=False,
    )


def _carries_content(chunk: ChatChunk) -> bool:
    return bool(chunk.text or chunk.tool_calls or chunk.finish_reason or chunk.usage)


async def open_stream(stream: AsyncIterator[ChatChunk]) -> list[ChatChunk]:
    """Pull the stream up to its first chunk with content (text, a tool call, the end).

    Leading empty chunks (a role-only first delta) are held back with it, so "the
    caller has seen part of the answer" means a token, not a preamble. An empty list
    means the stream ended with no chunk at all.
    """
    head: list[ChatChunk] = []
    async for chunk in stream:
        head.append(chunk)
        if _carries_content(chunk):
            break
    return head
