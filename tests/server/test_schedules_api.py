"""Schedules API (list, pause, resume; admin scope to change, audited) and the priority
of runs enqueued through the runs API."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from legato.config import LegatoConfig
from legato.server import create_app
from legato.testing import FakeProvider

from .conftest import MASTER, Running, catalog_for, gateway_settings, pipeline_config, serve_in_thread


@pytest.fixture(scope="module")
def scheduled(fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("schedules")
    base = pipeline_config(tmp)
    config = LegatoConfig(
        {
            **base.data,
            "queues": {"loud": {"pipelines": ["shout"]}},
            "schedules": {
                "hourly-shout": {"pipeline": "shout", "inputs": {"text": "hi"}, "cron": "0 * * * *"},
                "nap-often": {"pipeline": "nap", "inputs": {"seconds": 0}, "every": "30s", "queue": "naps"},
            },
        },
        source=base.source,
    )
    app = create_app(gateway_settings(tmp), catalog=catalog_for(fake), config=config)
    with serve_in_thread(app) as url:
        yield Running(url, app, fake)


def test_schedules_are_listed_and_paused_by_an_admin_only(scheduled: Running) -> None:
    reader = scheduled.create_key(["runs:read", "runs:write"])
    with scheduled.client(reader) as c:
        listed = c.get("/v1/schedules")
        assert listed.status_code == 200, listed.text
        views = {v["name"]: v for v in listed.json()["data"]}
        assert set(views) == {"hourly-shout", "nap-often"}
        assert (views["hourly-shout"]["rule"], views["hourly-shout"]["queue"]) == ("cron 0 * * * *", "loud")
        assert (views["nap-often"]["rule"], views["nap-often"]["queue"]) == ("every 30s", "naps")
        assert views["nap-often"]["next_tick"] % 30 == 0
        assert c.post("/v1/schedules/nap-often/pause").status_code == 403
    with scheduled.admin() as admin:
        paused = admin.post("/v1/schedules/nap-often/pause")
        assert paused.status_code == 200, paused.text
        assert paused.json()["paused"] is True
        view = next(v for v in admin.get("/v1/schedules").json()["data"] if v["name"] == "nap-often")
        assert (view["paused"], view["next_tick"]) == (True, None)
        assert view["paused_by"]
        assert admin.post("/v1/schedules/nap-often/resume").json()["paused"] is False
        missing = admin.post("/v1/schedules/nope/pause")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "schedule_not_found"
        assert "hourly-shout, nap-often" in missing.json()["error"]["message"]
        actions = [a["action"] for a in admin.get("/v1/admin/audit").json()["data"]]
        assert {"schedule_paused", "schedule_resumed"} <= set(actions)


def test_a_queued_run_takes_its_priority(scheduled: Running) -> None:
    writer = scheduled.create_key(["runs:read", "runs:write"])
    with scheduled.client(writer) as c:
        r = c.post("/v1/pipelines/shout/runs", json={"inputs": {"text": "a"}, "priority": 7})
        assert r.status_code == 202, r.text
        assert (r.json()["status"], r.json()["queue"], r.json()["priority"]) == ("queued", "loud", 7)
        no_queue = c.post("/v1/pipelines/nap/runs", json={"inputs": {"seconds": 0}, "priority": 7})
        assert no_queue.status_code == 400
        assert no_queue.json()["error"]["param"] == "priority"
        for wrong in ("7", True, 7.5):  # JSON's integer only: no coercion from strings, booleans or fractions
            refused = c.post("/v1/pipelines/shout/runs", json={"inputs": {"text": "a"}, "priority": wrong})
            assert refused.status_code == 400, wrong
            assert refused.json()["error"]["param"] == "priority"
        whole = c.post("/v1/pipelines/shout/runs", json={"inputs": {"text": "a"}, "priority": 3.0})
        assert (whole.status_code, whole.json()["priority"]) == (202, 3)  # JSON Schema: 3.0 is the integer 3


def test_the_dashboard_lists_schedules_and_admins_pause_them(scheduled: Running) -> None:
    reader = scheduled.create_key(["runs:read"])
    with httpx.Client(base_url=scheduled.url, timeout=30) as browser:
        assert browser.post("/ui/login", data={"key": reader, "next": "/ui/schedules"}).status_code == 303
        page = browser.get("/ui/schedules")
        assert page.status_code == 200
        assert "hourly-shout" in page.text
        assert "every 30s" in page.text
        assert "Pause</button>" not in page.text  # a runs:read key sees, does not change
        assert browser.post("/ui/schedules/hourly-shout/pause").status_code == 403
    with httpx.Client(base_url=scheduled.url, timeout=30) as admin:
        admin.post("/ui/login", data={"key": MASTER, "next": "/ui/schedules"})
        assert (
            admin.post("/ui/schedules/hourly-shout/pause", headers={"origin": "https://evil.example"}).status_code
            == 403
        )
        done = admin.post("/ui/schedules/hourly-shout/pause")
        assert done.status_code == 303
        page = admin.get("/ui/schedules").text
        assert "paused by dashboard" in page
        assert "Resume</button>" in page
        assert admin.post("/ui/schedules/hourly-shout/resume").status_code == 303
        assert "Resume</button>" not in admin.get("/ui/schedules").text
