"""``legato run`` with the store, ``legato runs ...`` and ``legato journal ...`` through the real CLI."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from legato.cli import app
from legato.cli.runs import parse_duration
from legato.store import NewRun

STEPS = """
from pathlib import Path

HERE = Path(__file__).parent


def _log(name: str) -> None:
    with open(HERE / "calls.txt", "a") as f:
        f.write(name + "\\n")


async def upper(text: str) -> str:
    _log("upper")
    return text.upper()


async def gate(upper: str) -> str:
    _log("gate")
    if (HERE / "broken").exists():
        raise RuntimeError("the gate is closed")
    return upper + "!"
"""

PIPELINE = """
name: gated
inputs: {text: string}
steps:
  upper: {uses: ./steps.py:upper}
  gate: {uses: ./steps.py:gate}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "steps.py").write_text(STEPS)
    (tmp_path / "gated.yaml").write_text(textwrap.dedent(PIPELINE).lstrip())
    return tmp_path


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def calls(project: Path) -> list[str]:
    return (project / "calls.txt").read_text().split()


def test_parse_duration() -> None:
    assert parse_duration("30d") == 30 * 86400
    assert parse_duration("1.5h") == 5400
    with pytest.raises(ValueError, match="invalid duration '30 days'"):
        parse_duration("30 days")


def test_run_is_stored_idempotent_and_conflicts_exit_2(project: Path) -> None:
    db = str(project / "s.db")
    args = ["run", str(project / "gated.yaml"), "-i", "text=hi", "--database-url", db, "--json"]
    code, out, _ = invoke(*args, "--idempotency-key", "k1")
    assert code == 0
    first = json.loads(out)
    code, out, _ = invoke(*args, "--idempotency-key", "k1")
    assert code == 0
    assert json.loads(out)["run_id"] == first["run_id"]
    assert calls(project) == ["upper", "gate"]  # the second call ran nothing
    code, _, err = invoke(
        "run", str(project / "gated.yaml"), "-i", "text=other", "--database-url", db, "--idempotency-key", "k1"
    )
    assert code == 2
    assert f"already used by run {first['run_id']}" in err.replace("\n", "")
    code, out, _ = invoke("runs", "list", "--json", "--database-url", db)
    listed = json.loads(out)
    assert [r["id"] for r in listed] == [first["run_id"]]
    assert listed[0]["source"] == str((project / "gated.yaml").resolve())
    assert (listed[0]["priority"], listed[0]["queue"], listed[0]["tags"]) == (0, None, [])  # every stored field
    assert "request_hash" not in listed[0]


def test_runs_are_tagged_from_the_command_line(project: Path) -> None:
    db = str(project / "s.db")
    args = ["run", str(project / "gated.yaml"), "-i", "text=hi", "--database-url", db, "--json"]
    code, out, _ = invoke(*args, "--tag", "nightly", "--tag", "team:search", "--tag", "nightly")
    assert code == 0
    run_id = json.loads(out)["run_id"]
    code, out, _ = invoke("runs", "list", "--tag", "team:search", "--json", "--database-url", db)
    assert [(r["id"], r["tags"]) for r in json.loads(out)] == [(run_id, ["nightly", "team:search"])]
    code, _, err = invoke(*args, "--tag", "has space")
    assert code == 2
    assert "--tag: tag 'has space': use 1-64 ASCII letters" in err
    code, out, _ = invoke("runs", "list", "--json", "--database-url", db)
    assert len(json.loads(out)) == 1  # the refused command stored nothing
    code, out, _ = invoke(*args, "--queue", "later", "--no-wait", "--tag", "queued-one")
    assert code == 0
    code, out, _ = invoke("runs", "list", "--tag", "queued-one", "--json", "--database-url", db)
    assert [(r["status"], r["queue"], r["tags"]) for r in json.loads(out)] == [("queued", "later", ["queued-one"])]


def test_failed_run_show_resume_and_reflection(project: Path) -> None:
    db = str(project / "s.db")
    (project / "broken").touch()
    code, out, _ = invoke("run", str(project / "gated.yaml"), "-i", "text=hi", "--database-url", db, "--json")
    assert code == 1
    run_id = json.loads(out)["run_id"]
    code, out, _ = invoke("runs", "show", run_id, "--json", "--events", "--database-url", db)
    assert code == 0
    shown = json.loads(out)
    assert shown["status"] == "failed"
    assert [(s["step"], s["status"]) for s in shown["steps"]] == [("upper", "succeeded"), ("gate", "failed")]
    assert shown["events"][0]["type"] == "RunStarted"
    (project / "broken").unlink()
    code, out, _ = invoke("runs", "resume", run_id[:10], "--json", "--database-url", db)
    assert code == 0, out
    assert json.loads(out)["outputs"] == {"upper": "HI", "gate": "HI!"}
    assert calls(project) == ["upper", "gate", "gate"]
    code, _, err = invoke("runs", "resume", run_id, "--database-url", db)
    assert code == 1
    assert "already succeeded" in err
    # the failure was reflected in the journal, and --recall shows it before the next run
    code, out, _ = invoke("journal", "recent", "--json", "--database-url", db)
    entries = json.loads(out)
    assert entries[0]["author"] == "auto"
    assert entries[0]["title"] == "gated: step gate failed with RuntimeError"
    code, out, _ = invoke("run", str(project / "gated.yaml"), "-i", "text=yo", "--database-url", db, "--recall")
    assert code == 0
    assert "journal: related entries" in out
    assert "gated: step gate failed with RuntimeError" in out


def test_runs_errors_cancel_and_prune(project: Path) -> None:
    db = str(project / "s.db")
    code, _, err = invoke("runs", "prune", "--older-than", "soon", "--database-url", db)
    assert code == 2
    code, out, _ = invoke("run", str(project / "gated.yaml"), "-i", "text=a", "--database-url", db, "--json")
    run_id = json.loads(out)["run_id"]
    code, _, err = invoke("runs", "show", "nope", "--database-url", db)
    assert code == 1
    assert "no run with id 'nope'" in err
    code, _, err = invoke("runs", "cancel", run_id, "--database-url", db)
    assert code == 1
    assert "already succeeded" in err
    code, out, _ = invoke("runs", "list", "--dead", "--database-url", db)
    assert "no runs" in out
    code, out, _ = invoke("runs", "prune", "--older-than", "0s", "--database-url", db)
    assert out.strip() == "pruned 1 run finished more than 0s ago"
    code, out, _ = invoke("runs", "list", "--json", "--database-url", db)
    assert json.loads(out) == []


def test_corrupt_database_exits_2_with_a_clear_message(project: Path) -> None:
    bad = project / "bad.db"
    bad.write_text("hello")
    code, _, err = invoke("runs", "list", "--database-url", str(bad))
    assert code == 2
    assert "is not a SQLite database" in err
    assert bad.read_text() == "hello"


def test_journal_add_search_recent_show(project: Path) -> None:
    db = str(project / "s.db")
    code, out, _ = invoke(
        "journal", "add", "OpenAI 429 on summarize", "--body", "Lower concurrency to 4.", "-t", "openai",
        "--database-url", db, "--json",
    )  # fmt: skip
    assert code == 0
    entry = json.loads(out)
    invoke("journal", "add", "OCR is slow", "--body", "Use rapidocr.", "--database-url", db)
    code, out, _ = invoke("journal", "search", "why 429 from openai", "--json", "--database-url", db)
    found = json.loads(out)
    assert found[0]["id"] == entry["id"]
    code, out, _ = invoke("journal", "show", str(entry["id"]), "--database-url", db)
    assert "Lower concurrency to 4." in out
    assert "#openai" in out
    code, out, _ = invoke("journal", "recent", "-n", "1", "--database-url", db)
    assert "OCR is slow" in out
    code, _, err = invoke("journal", "show", "999", "--database-url", db)
    assert code == 1
    assert "no journal entry with id 999" in err


def test_estimate_cost_of_priced_and_local_pipelines(monkeypatch: pytest.MonkeyPatch, project: Path) -> None:
    from legato.cli.runs import estimate_cost
    from legato.spec import load_pipeline

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    priced = load_pipeline(
        "name: priced\ninputs: {text: string}\nsteps:\n"
        "  answer: {llm: openai/gpt-4o-mini, prompt: 'Answer: ${inputs.text}', max_tokens: 50}\n"
    )
    estimate = estimate_cost(priced)
    assert estimate is not None
    assert 0 < estimate < 0.01
    assert estimate_cost(load_pipeline(project / "gated.yaml")) is None  # python steps cost nothing


def test_runs_recover_reloads_pipelines_from_their_source(project: Path) -> None:
    import anyio

    from legato.spec import load_pipeline
    from legato.store import RunStore, pipeline_version

    db = project / "s.db"
    yaml = project / "gated.yaml"

    async def orphan() -> str:
        async with RunStore(db) as store:
            record, _ = await store.create_run(NewRun(
                pipeline="gated", version_hash=pipeline_version(load_pipeline(yaml)), inputs={"text": "late"},
                owner="far-away-host:1:dead", lease_ttl=-1, source=str(yaml),
            ))  # fmt: skip
            return record.id

    run_id = anyio.run(orphan)
    code, out, _ = invoke("runs", "list", "--database-url", str(db))
    assert "orphaned" in out
    code, out, _ = invoke("runs", "recover", "--database-url", str(db))
    assert code == 0
    assert out.strip() == f"{run_id} gated: resumed -> succeeded"
    code, out, _ = invoke("runs", "recover", "--database-url", str(db))
    assert out.strip() == "no orphaned runs"


def test_listed_short_ids_resolve_and_ambiguous_prefixes_list_the_runs(project: Path) -> None:
    db = str(project / "s.db")
    ids = []
    for text in ("a", "b", "c"):
        code, out, _ = invoke("run", str(project / "gated.yaml"), "-i", f"text={text}", "--database-url", db, "--json")
        ids.append(json.loads(out)["run_id"])
    code, out, _ = invoke("runs", "list", "--database-url", db)
    assert code == 0
    shown = [line.split()[0] for line in out.splitlines() if line.split() and line.split()[0][:4] == ids[0][:4]]
    assert len(shown) == 3
    for prefix in shown:
        code, out, err = invoke("runs", "show", prefix, "--json", "--database-url", db)
        assert code == 0, err
        assert json.loads(out)["id"].startswith(prefix)
    shared = os.path.commonprefix(ids)  # noqa: RUF071 (ids, not paths)
    code, _, err = invoke("runs", "show", shared, "--database-url", db)
    assert code == 2
    message = err.replace("\n", "")
    assert f"run id prefix {shared!r} matches 3 runs" in message
    assert all(run_id in message for run_id in ids)
    code, _, err = invoke("runs", "cancel", shared, "--database-url", db)
    assert code == 2


def test_runs_list_rejects_an_unknown_status_with_a_suggestion(project: Path) -> None:
    db = str(project / "s.db")
    invoke("run", str(project / "gated.yaml"), "-i", "text=a", "--database-url", db)
    code, out, err = invoke("runs", "list", "--status", "falied", "--database-url", db)
    assert code == 2
    assert "unknown status 'falied' (did you mean 'failed'?)" in err.replace("\n", "")
    code, out, _ = invoke("runs", "list", "--status", "orphaned", "--database-url", db)
    assert code == 0
    assert "no runs" in out


def test_runs_show_lists_every_attempt_including_retries(tmp_path: Path) -> None:
    (tmp_path / "flaky.py").write_text(
        textwrap.dedent(
            """
            from pathlib import Path

            COUNT = Path(__file__).parent / "count"


            def flaky(text: str) -> str:
                n = int(COUNT.read_text()) if COUNT.exists() else 0
                COUNT.write_text(str(n + 1))
                if n < 2:
                    raise ConnectionError(f"attempt {n + 1} lost the connection")
                return text
            """
        )
    )
    spec = """
        name: flaky
        inputs: {text: string}
        steps:
          call:
            uses: ./flaky.py:flaky
            retries: {max_attempts: 3, base_delay: 0, jitter: none, retry_on: any}
    """
    (tmp_path / "flaky.yaml").write_text(textwrap.dedent(spec).lstrip())
    db = str(tmp_path / "s.db")
    code, out, err = invoke("run", str(tmp_path / "flaky.yaml"), "-i", "text=ok", "--database-url", db, "--json")
    assert code == 0, out + err
    run_id = json.loads(out)["run_id"]
    code, out, _ = invoke("runs", "show", run_id, "--json", "--database-url", db)
    rows = [(s["step"], s["attempt"], s["status"]) for s in json.loads(out)["steps"]]
    assert rows == [("call", 1, "retried"), ("call", 2, "retried"), ("call", 3, "succeeded")]
    assert json.loads(out)["steps"][0]["error"] == "ConnectionError: attempt 1 lost the connection"
    code, out, _ = invoke("runs", "show", run_id, "--database-url", db)
    assert "attempt 2 lost the connection" in out


def test_runs_list_searches_words_and_tags(tmp_path: Path) -> None:
    import anyio

    from legato.store import RunStore

    db = str(tmp_path / "find.db")

    async def seed() -> dict[str, str]:
        async with RunStore(db) as store:
            a, _ = await store.create_run(
                NewRun(pipeline="p", version_hash="v", inputs={"text": "lost parcel"}, tags=["vip"])
            )
            b, _ = await store.create_run(NewRun(pipeline="p", version_hash="v", inputs={"text": "wrong invoice"}))
            return {"a": a.id, "b": b.id}

    ids = anyio.run(seed)
    code, out, _ = invoke("runs", "list", "--json", "-q", "parcel", "--database-url", db)
    assert code == 0
    assert [r["id"] for r in json.loads(out)] == [ids["a"]]
    code, out, _ = invoke("runs", "list", "--json", "--tag", "vip", "--database-url", db)
    assert [(r["id"], r["tags"]) for r in json.loads(out)] == [(ids["a"], ["vip"])]
    code, _, err = invoke("runs", "list", "--tag", "two words", "--database-url", db)
    assert code == 2
    assert "--tag: tag 'two words'" in err
