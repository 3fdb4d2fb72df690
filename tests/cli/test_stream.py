"""``legato run --stream`` in a real subprocess against the fake provider: tokens
of parallel ``llm:`` steps arrive labelled by step, plain when piped, and the JSON
document of ``--json`` stays alone on stdout."""

from __future__ import annotations

import io
import json
import sys
from collections import defaultdict
from pathlib import Path

import anyio

from legato.cli._stream import TokenPrinter
from legato.engine import StepToken
from legato.testing import FakeProvider, Reply
from legato.testing.pytest_plugin import fake_provider

__all__ = ["fake_provider"]

LEGATO = str(Path(sys.executable).parent / "legato")

PIPELINE = """\
name: two
inputs:
  topic: string
steps:
  poem:
    llm: fast
    prompt: "A poem about ${inputs.topic}"
  joke:
    llm: fast
    prompt: "A joke about ${inputs.topic}"
outputs:
  poem: ${steps.poem.text}
"""


def project(tmp_path: Path, base: str) -> Path:
    (tmp_path / "legato.yaml").write_text(
        f"models:\n  fast: {{provider: openai, model: gpt-4o-mini, base_url: '{base}/v1'}}\n"
    )
    (tmp_path / "p.yaml").write_text(PIPELINE)
    return tmp_path


def by_label(text: str) -> dict[str, str]:
    found: dict[str, str] = defaultdict(str)
    for line in text.splitlines():
        label, sep, rest = line.partition(" | ")
        if sep:
            found[label] += rest
    return dict(found)


async def legato_run(cwd: Path, *args: str) -> anyio.abc.Process:
    return await anyio.run_process(
        [LEGATO, "run", "p.yaml", "--config", "legato.yaml", "--database-url", str(cwd / "runs.db"), *args],
        cwd=cwd,
        check=False,
    )


async def test_stream_prints_tokens_labelled_by_step(tmp_path: Path, fake_provider: FakeProvider) -> None:
    fake_provider.script(*[Reply(chunk_chars=2, chunk_delay=0.002)] * 2)
    cwd = project(tmp_path, fake_provider.base_url)
    done = await legato_run(cwd, "--stream", "-i", "topic=cats")
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()
    assert by_label(out) == {"poem": "A poem about cats", "joke": "A joke about cats"}
    assert "\x1b" not in out  # piped: plain text


async def test_stream_with_json_keeps_stdout_a_json_document(tmp_path: Path, fake_provider: FakeProvider) -> None:
    fake_provider.script(*[Reply(chunk_chars=3)] * 2)
    cwd = project(tmp_path, fake_provider.base_url)
    done = await legato_run(cwd, "--stream", "--json", "-i", "topic=dogs")
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout)["outputs"] == {"poem": "A poem about dogs"}
    assert by_label(done.stderr.decode())["poem"] == "A poem about dogs"


def test_printer_interleaves_by_line_and_cleans_a_terminal() -> None:
    out = io.StringIO()
    printer = TokenPrinter(out, terminal=False)
    for step, text in [("a", "one "), ("b", "x"), ("a", "two\nthree"), ("a", "\n"), ("b", "y")]:
        printer(StepToken("r", 0.0, step, None, text))
    printer(StepToken("r", 0.0, "m", 3, "item"))
    printer.end_line()
    assert out.getvalue() == "a | one \nb | x\na | two\na | three\nb | y\nm[3] | item\n"
    tty = io.StringIO()
    TokenPrinter(tty, terminal=True)(StepToken("r", 0.0, "a", None, "ok\x1b[2J\rdone"))
    assert tty.getvalue().endswith("okdone")
    assert "\x1b[2J" not in tty.getvalue()
