"""The gateway's model-call rows (the dashboard's call view): one per call, kept as the
calling key's with the request id; the prompt is the one the model saw (after the key's
guardrail); streams, embeddings and failures included; a call the guardrail blocked,
which never reached the model, is not kept."""

from __future__ import annotations

from pathlib import Path

import httpx

from legato.server import create_app
from legato.store import Principal, gateway_calls
from legato.testing import FakeProvider, Fault, Reply

from .conftest import MASTER, catalog_for, gateway_settings

EMAIL = "maria.lopez@example.org"
ADMIN = Principal("admin", sees_all=True)


async def test_each_call_is_kept_as_its_keys_with_the_prompt_the_model_saw(fake: FakeProvider, tmp_path: Path) -> None:
    app = create_app(gateway_settings(tmp_path), catalog=catalog_for(fake))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw", timeout=30) as c:

            async def key(**spec: object) -> tuple[str, str]:
                body = {"name": "calls", "scopes": ["chat", "embed"], **spec}
                r = await c.post("/v1/admin/keys", json=body, headers={"authorization": f"Bearer {MASTER}"})
                assert r.status_code == 201, r.text
                return str(r.json()["key"]), str(r.json()["id"])

            async def call(secret: str, path: str, rid: str, body: dict[str, object]) -> httpx.Response:
                headers = {"authorization": f"Bearer {secret}", "x-request-id": rid}
                return await c.post(path, json={"model": "gpt-fake", **body}, headers=headers)

            (plain, plain_id), (masked, masked_id), (blocked, _) = (
                await key(),
                await key(guardrail="pii-mask-patterns"),
                await key(guardrail="pii-block-patterns"),
            )
            ask = {"messages": [{"role": "user", "content": f"Write to {EMAIL} today."}]}
            fake.script(Reply(text="Done."))
            assert (await call(masked, "/v1/chat/completions", "req-masked", ask)).status_code == 200
            assert (await call(blocked, "/v1/chat/completions", "req-blocked", ask)).status_code == 400
            fake.script(Reply(text="One two three."))
            streamed = await call(plain, "/v1/chat/completions", "req-stream", {**ask, "stream": True})
            assert streamed.status_code == 200
            assert (await call(plain, "/v1/embeddings", "req-embed", {"input": ["a", "b"]})).status_code == 200
            fake.inject(Fault.http_error("bad_request"))
            assert (await call(plain, "/v1/chat/completions", "req-failed", ask)).status_code == 400
        gw = app.state.gateway
        await gw.calls.flush()
        rows = {row.request_id: row for row in await gateway_calls(gw.calls.store, ADMIN)}

    assert set(rows) == {"req-masked", "req-stream", "req-embed", "req-failed"}  # the blocked call is not kept
    masked_row = rows["req-masked"]
    assert masked_row.tenant == masked_id
    assert EMAIL not in masked_row.detail["prompt"]
    assert "<EMAIL_ADDRESS_1>" in masked_row.detail["prompt"]  # what the model saw
    assert (masked_row.status, masked_row.model, masked_row.deployment) == ("ok", "gpt-fake", "gpt-fake")
    stream_row = rows["req-stream"]
    assert stream_row.tenant == plain_id
    assert stream_row.detail["prompt"] == f"user: Write to {EMAIL} today."
    assert stream_row.detail["answer"] == "One two three."
    assert stream_row.ttft_s is not None
    assert 0 < stream_row.ttft_s <= stream_row.latency_s
    assert rows["req-embed"].detail["answer"] == "2 vectors"
    failed = rows["req-failed"]
    assert (failed.status, failed.tenant) == ("BadRequest", plain_id)
    assert failed.detail["error"]
