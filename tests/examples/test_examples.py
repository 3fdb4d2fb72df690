"""The example pipelines run: on local models with no key, and against the fake provider."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from legato import tasks
from legato.config import LegatoConfig
from legato.spec import load_pipeline
from legato.testing import FakeProvider, Fault, Reply

pytestmark = pytest.mark.local_models

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DOCUMENTS = EXAMPLES / "data" / "documents"
KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "LOCAL_LLAMA_API_KEY")
ANGRY = "The invoice from Acme Corp charged me twice and Maria Lopez never replied. This is terrible and I am angry."


@pytest.fixture
def no_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.delenv("LEGATO_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./legato.yaml: the example falls back to examples/legato.yaml


def fake_config(fake: FakeProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """examples/legato.yaml with every remote model pointed at the fake provider."""
    data: dict[str, Any] = yaml.safe_load((EXAMPLES / "legato.yaml").read_text())
    data["models"]["gpt-4o-mini"]["base_url"] = fake.openai_base_url
    data["models"]["claude-haiku"]["base_url"] = fake.anthropic_base_url
    data["models"]["local-llama"]["base_url"] = fake.openai_base_url
    path = tmp_path / "legato.yaml"
    path.write_text(yaml.safe_dump(data))
    for key in KEYS:
        monkeypatch.setenv(key, "sk-test")
    monkeypatch.setenv("LEGATO_CONFIG", str(path))
    return path


async def test_document_insights_runs_offline_and_says_the_summary_degraded(no_keys: None, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    pipeline = load_pipeline(EXAMPLES / "document_insights.yaml")
    result = await pipeline.run({"folder": str(DOCUMENTS), "out_dir": str(out)})
    assert result.ok, result.error
    digests = {d["document"]: d for d in result.result["reports"]}
    assert set(digests) == {"harbor-bank-results.png", "lumen-laptop-review.png", "riverside-council-minutes.pdf"}
    assert digests["harbor-bank-results.png"]["topic"] == "finance"
    assert digests["lumen-laptop-review.png"]["topic"] == "technology"
    assert digests["riverside-council-minutes.pdf"]["topic"] == "government"
    assert digests["lumen-laptop-review.png"]["sentiment"] == "negative"
    assert "Harbor Bank" in digests["harbor-bank-results.png"]["entities"]["ORG"]
    assert "Laura Chen" in digests["harbor-bank-results.png"]["entities"]["PERSON"]
    for digest in digests.values():
        assert "ANTHROPIC_API_KEY and OPENAI_API_KEY not set" in digest["summarised_by"]
        report = json.loads(Path(digest["report"]).read_text())
        source = tasks.split_sentences(report["text"])
        assert all(sentence in source for sentence in tasks.split_sentences(report["summary"]))
        assert len(report["embedding"]) == 384
        assert report["most_similar"]["document"] != report["document"]


async def test_document_insights_summarises_with_anthropic_when_a_key_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    shutil.copy(DOCUMENTS / "lumen-laptop-review.png", folder)
    async with FakeProvider(seed=1) as fake:
        fake_config(fake, tmp_path, monkeypatch)
        fake.script(Reply(text="A disappointing laptop review."), api="anthropic")
        pipeline = load_pipeline(EXAMPLES / "document_insights.yaml")
        result = await pipeline.run({"folder": str(folder), "out_dir": str(tmp_path / "out")})
        assert result.ok, result.error
        [digest] = result.result["reports"]
        assert digest["summary"] == "A disappointing laptop review."
        assert digest["summarised_by"].startswith("claude-haiku")
        [request] = fake.requests_for("anthropic")
        assert "Lumen Air 14" in json.dumps(request.body)


async def _run_multi_provider(config: Path) -> dict[str, Any]:
    pipeline = load_pipeline(EXAMPLES / "multi_provider.yaml", config=LegatoConfig.load(config))
    result = await pipeline.run({})
    assert result.ok, result.error
    return result.result


async def test_multi_provider_prefers_the_cheaper_hosted_model_and_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FakeProvider(seed=2, default=Reply(text="We will send a replacement today.")) as fake:
        config = fake_config(fake, tmp_path, monkeypatch)
        out = await _run_multi_provider(config)
        assert out["reply_by"] == "gpt-4o-mini"  # lowest cost of the two
        assert out["reply_degraded"] is False
        assert out["gist_by"] == "smollm2-135m-instruct"  # the local Llama server (here: the fake)

        fake.inject(Fault.server_error(), api="openai", model="gpt-4o-mini")
        out = await _run_multi_provider(config)
        assert out["reply_by"] == "claude-haiku-4-5"

        fake.clear()
        fake.inject(Fault.overloaded())  # every provider down
        out = await _run_multi_provider(config)
        assert out["reply_degraded"] is True
        assert out["reply"].startswith("Thank you for your message")
        assert out["gist_by"] == "local-extractive"
        assert out["gist"] in " ".join(tasks.split_sentences(yaml.safe_load(_ticket())))


def _ticket() -> str:
    spec = yaml.safe_load((EXAMPLES / "multi_provider.yaml").read_text())
    return json.dumps(spec["inputs"]["ticket"]["default"])


async def test_multi_provider_runs_with_no_key_and_no_server(no_keys: None) -> None:
    out = await _run_multi_provider(EXAMPLES / "legato.yaml")
    assert out["reply_degraded"] is True
    assert out["gist_by"] == "local-extractive"
    assert out["cost_usd"] == 0


async def test_text_insights_runs_on_local_models() -> None:
    pipeline = load_pipeline(EXAMPLES / "text_insights.yaml")
    result = await pipeline.run({"text": ANGRY})
    assert result.ok, result.error
    out = result.result
    assert out["sentiment"] == "negative"
    assert out["topic"] == "billing"
    assert "Maria Lopez" in out["entities"]
    assert out["escalation"].startswith("route to the billing team")


def test_sequential_script_gives_the_same_answers_as_the_pipeline() -> None:
    import sys

    sys.path.insert(0, str(EXAMPLES))
    try:
        from text_insights_sequential import analyse
    finally:
        sys.path.remove(str(EXAMPLES))
    out = analyse(ANGRY)
    assert out["sentiment"] == "negative"
    assert out["topic"] == "billing"
    assert "Maria Lopez" in out["entities"]


async def test_text_insights_default_input_takes_the_escalation_branch() -> None:
    """`legato run examples/text_insights.yaml` with no input shows what the demo exists for."""
    result = await load_pipeline(EXAMPLES / "text_insights.yaml").run({})
    assert result.ok, result.error
    out = result.result
    assert out["sentiment"] == "negative"
    assert out["topic"] == "shipping"
    assert out["escalation"].startswith("route to the shipping team")
    assert "Acme" in out["entities"]
    assert "Maria Lopez" in out["entities"]


DOCUMENT_TOPICS = {
    "harbor-bank-results.png": "finance",
    "lumen-laptop-review.png": "technology",
    "riverside-council-minutes.pdf": "government",
}


def test_each_demo_document_gets_its_topic_by_a_clear_margin() -> None:
    """The topic of each demo document is not borderline: a small model change must not flip it."""
    spec = yaml.safe_load((EXAMPLES / "document_insights.yaml").read_text())
    classify = tasks.ClassifyTask(spec["steps"]["topic"]["options"]["labels"])
    ocr = tasks.get("ocr")
    assert isinstance(ocr, tasks.OcrTask)
    names = sorted(DOCUMENT_TOPICS)
    texts = [page.text for page in ocr.run_sync([str(DOCUMENTS / name) for name in names])]
    for name, text, outcome in zip(names, texts, classify.run_sync(texts), strict=True):
        assert outcome.label == DOCUMENT_TOPICS[name], (name, text[:200], outcome.scores)
        assert outcome.score > 0.9, (name, outcome.scores)
