"""The runs list finds runs by words, tags, cost and duration, keeps the filters in the
URL, drops malformed values instead of failing, and says when payloads are not indexed."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from legato.server.ui import DashboardSources, mount_dashboard
from legato.store import NewRun, RunStore
from legato.store._crypto import new_key_text

ADMIN = "admin-key-for-finding"
AUTH = {"authorization": f"Bearer {ADMIN}"}


def shown(page: str) -> list[str]:
    return re.findall(r'data-run="([^"]+)"', page)


async def seed(store: RunStore) -> dict[str, str]:
    made = {}
    for name, text, tags, cost, error in [
        ("parcel", "my parcel never arrived", ["vip"], 0.5, None),
        ("invoice", "the invoice is wrong", [], 0.01, None),
        ("quota", "anything", ["vip"], None, "QuotaExhausted: monthly quota"),
    ]:
        run = NewRun(pipeline="support", version_hash="v", inputs={"text": text}, owner="w", tags=tags)
        record, _ = await store.create_run(run)
        status = "failed" if error else "succeeded"
        await store.finish_run(record.id, "w", status=status, error=error, cost=cost, outputs={"ok": True})
        made[name] = record.id
    return made


async def client_for(store: RunStore) -> httpx.AsyncClient:
    app = FastAPI()
    mount_dashboard(app, DashboardSources(store=store, admin_key=ADMIN))
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 4321))
    return httpx.AsyncClient(transport=transport, base_url="http://d", headers=AUTH)


async def test_the_runs_list_searches_and_keeps_its_filters(tmp_path: Path) -> None:
    async with RunStore(tmp_path / "find.db") as store:
        made = await seed(store)
        async with await client_for(store) as c:
            page = (await c.get("/ui/", params={"q": "parcel arrived"})).text
            assert shown(page) == [made["parcel"]]
            assert 'value="parcel arrived"' in page
            assert shown((await c.get("/ui/", params={"q": "quota"})).text) == [made["quota"]]
            vip = (await c.get("/ui/", params={"tags": "vip", "min_cost": "0.1"})).text
            assert shown(vip) == [made["parcel"]]
            assert '<details class="more-filters" open>' in vip  # a filter under "More filters" is shown
            assert 'data-live="/ui/live/runs?tags=vip&amp;min_cost=0.1&amp;limit=50"' in vip
            assert 'href="/ui/?tags=vip"' in vip  # each tag links to its runs
            sloppy = await c.get("/ui/", params={"min_cost": "cheap", "since": "yesterday", "tags": "a b"})
            assert sloppy.status_code == 200
            assert set(shown(sloppy.text)) == set(made.values())  # malformed values are dropped
            assert 'id="search-note"' not in sloppy.text
            page = (await c.get("/ui/", params={"q": "invoice", "limit": "1"})).text
            assert shown(page) == [made["invoice"]]
            assert 'id="next-page"' not in page


@pytest.mark.parametrize("given", ["master", ""])
async def test_admins_narrow_the_list_to_one_key(tmp_path: Path, given: str) -> None:
    async with RunStore(tmp_path / "keys.db") as store:
        mine, _ = await store.create_run(NewRun(pipeline="p", version_hash="v", inputs={}, tenant="master"))
        await store.create_run(NewRun(pipeline="p", version_hash="v", inputs={}, tenant="someone"))
        async with await client_for(store) as c:
            page = (await c.get("/ui/", params={"key": given})).text
            assert '<option value="master"' in page
            assert len(shown(page)) == (1 if given else 2)
            if given:
                assert shown(page) == [mine.id]


async def test_an_encrypted_store_says_what_search_covers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEGATO_TEST_FIND_KEK", new_key_text())
    async with RunStore(tmp_path / "sealed.db", encryption_key="env:LEGATO_TEST_FIND_KEK") as store:
        made = await seed(store)
        async with await client_for(store) as c:
            page = (await c.get("/ui/", params={"q": "parcel"})).text
            assert shown(page) == []
            assert "not indexed" in page
            assert shown((await c.get("/ui/", params={"q": "quota"})).text) == [made["quota"]]
