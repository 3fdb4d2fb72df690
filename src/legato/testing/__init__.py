"""A fake model provider for tests: a real HTTP server speaking the real APIs.

:class:`FakeProvider` answers OpenAI Chat Completions and Embeddings, Anthropic
Messages, Hugging Face TGI and the Hugging Face inference tasks, as JSON or SSE,
with scripted :class:`Reply` objects and injected :class:`Fault` objects (the
providers' exact error bodies and headers, latency, slow first byte, mid-stream
errors and disconnects, malformed JSON, connection resets). Every request it
receives is recorded for assertions. See ``docs/testing.md``.

::

    async with FakeProvider(seed=1) as fake:
        fake.script(Reply(text="hi"), Fault.rate_limited(retry_after=2))
        model = OpenAIModel("gpt-4o-mini", base_url=fake.openai_base_url, api_key="sk-test")
"""

from legato.testing._script import ERROR_KINDS, Fault, FaultRule, Latency, Reply, Script, load_script
from legato.testing._server import FakeProvider, RecordedRequest

__all__ = [
    "ERROR_KINDS",
    "FakeProvider",
    "Fault",
    "FaultRule",
    "Latency",
    "RecordedRequest",
    "Reply",
    "Script",
    "load_script",
]
