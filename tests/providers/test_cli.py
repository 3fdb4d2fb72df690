"""``legato chat``, ``legato models list`` and ``legato fake-provider``."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from legato.cli import app
from legato.providers import ToolCall
from legato.testing import FakeProvider, Fault, Reply

runner = CliRunner()


@pytest.fixture
def threaded_fake() -> Iterator[FakeProvider]:
    with FakeProvider(seed=0).in_thread() as fake:
        yield fake


@pytest.fixture
def config_file(tmp_path: Path, threaded_fake: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LEGATO_TEST_KEY", "sk-test")
    monkeypatch.delenv("LEGATO_TEST_ABSENT", raising=False)
    base = threaded_fake.base_url
    path = tmp_path / "legato.yaml"
    path.write_text(
        "models:\n"
        f"  gpt: {{provider: openai, model: gpt-4o-mini, base_url: '{base}/v1', api_key: 'env:LEGATO_TEST_KEY'}}\n"
        f"  claude: {{provider: anthropic, model: claude-3-5-haiku-latest, base_url: '{base}',"
        " api_key: 'env:LEGATO_TEST_KEY'}\n"
        f"  tgi: {{provider: tgi, model: zephyr, base_url: '{base}'}}\n"
        f"  absent: {{provider: anthropic, model: claude-x, api_key: 'env:LEGATO_TEST_ABSENT'}}\n"
    )
    return path


@pytest.mark.parametrize("name", ["gpt", "claude", "tgi"])
def test_chat_plain_and_streaming_for_each_wire_format(
    name: str, config_file: Path, threaded_fake: FakeProvider
) -> None:
    threaded_fake.script(Reply(text="plain answer"), Reply(text="streamed answer", chunk_chars=3))
    plain = runner.invoke(app, ["chat", name, "hello", "--config", str(config_file)])
    streamed = runner.invoke(app, ["chat", name, "hello", "--stream", "--config", str(config_file)])
    assert plain.exit_code == 0, plain.output
    assert plain.stdout.strip() == "plain answer"
    assert streamed.exit_code == 0, streamed.output
    assert streamed.stdout.strip() == "streamed answer"
    assert [r.stream for r in threaded_fake.requests] == [False, True]


def test_chat_json_output_and_tool_calls(config_file: Path, threaded_fake: FakeProvider) -> None:
    call = ToolCall(id="call_1", name="lookup", arguments='{"q": "x"}')
    threaded_fake.script(Reply(text="hi"), Reply(text="", tool_calls=[call]))
    as_json = runner.invoke(app, ["chat", "gpt", "hello", "--json", "--system", "be nice", "-c", str(config_file)])
    assert as_json.exit_code == 0, as_json.output
    body = json.loads(as_json.stdout)
    assert body["message"]["content"] == "hi"
    assert body["usage"]["input_tokens"] > 0
    assert body["cost"] > 0
    tools = runner.invoke(app, ["chat", "claude", "hello", "--stream", "-c", str(config_file)])
    assert '[tool call] lookup({"q": "x"})' in tools.stdout
    assert threaded_fake.requests[0].body["messages"][0] == {"role": "system", "content": "be nice"}


def test_chat_exit_codes(config_file: Path, threaded_fake: FakeProvider) -> None:
    threaded_fake.script(Fault.overloaded())
    failed = runner.invoke(app, ["chat", "claude", "hello", "-c", str(config_file)])
    assert failed.exit_code == 1
    assert "Overloaded" in failed.stderr
    missing_key = runner.invoke(app, ["chat", "absent", "hello", "-c", str(config_file)])
    assert missing_key.exit_code == 2
    assert "LEGATO_TEST_ABSENT" in missing_key.stderr
    unknown = runner.invoke(app, ["chat", "nope", "hello", "-c", str(config_file)])
    assert unknown.exit_code == 2


def test_models_list(config_file: Path) -> None:
    result = runner.invoke(app, ["models", "list", "--json", "-c", str(config_file)])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["gpt"]["key"] == "set"
    assert rows["absent"]["key"] == "missing $LEGATO_TEST_ABSENT"
    assert rows["gpt"]["price_per_1m"] == {"input": 0.15, "output": 0.6}
    assert rows["tgi"]["price_per_1m"] is None
    table = runner.invoke(app, ["models", "list", "-c", str(config_file)], env={"COLUMNS": "200"})
    assert "claude-3-5-haiku-latest" in table.stdout


@pytest.mark.slow
def test_fake_provider_command_serves_until_stopped(tmp_path: Path) -> None:
    script = tmp_path / "script.yaml"
    script.write_text("default: {text: from the script}\nscript:\n  - action: {kind: error, error: overloaded}\n")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from legato.cli import main; main()",
            "fake-provider",
            "--port",
            "0",
            "--script",
            str(script),
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"listening on (http://\S+)", line)
        assert match, line
        base = match.group(1)
        first = httpx.post(
            f"{base}/v1/messages", json={"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
        )
        second = httpx.post(
            f"{base}/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "x"}]}
        )
        assert first.status_code == 529
        assert second.json()["choices"][0]["message"]["content"] == "from the script"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()


def test_fake_provider_command_rejects_a_bad_script(tmp_path: Path) -> None:
    script = tmp_path / "bad.yaml"
    script.write_text("latency: {distribution: cauchy}\n")
    result = runner.invoke(app, ["fake-provider", "--script", str(script)])
    assert result.exit_code == 2
    assert "latency.distribution" in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_fake_provider_command_stops_at_once_on_a_signal_with_connections_open(sig: signal.Signals) -> None:
    script = "default: {text: slow, delay: 60}\n"
    proc = subprocess.Popen(
        [sys.executable, "-m", "legato", "fake-provider", "--port", "0", "--script", "/dev/stdin"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdin is not None
    assert proc.stderr is not None
    proc.stdin.write(script)
    proc.stdin.close()
    conns: list[socket.socket] = []
    try:
        match = re.search(r"listening on (http://\S+)", proc.stderr.readline())
        assert match
        address = ("127.0.0.1", httpx.URL(match.group(1)).port)
        idle = socket.create_connection(address)
        conns.append(idle)
        busy = socket.create_connection(address)
        conns.append(busy)
        body = b'{"model": "m", "messages": [{"role": "user", "content": "x"}]}'
        busy.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            + b"content-length: %d\r\n\r\n" % len(body)
            + body
        )
        proc.send_signal(sig)
        assert proc.wait(timeout=10) == 0  # before: SIGINT waited for the 60 s answer, SIGTERM killed it
        assert "stopped" in proc.stderr.read()
        answer = b"".join(iter(lambda: busy.recv(4096), b""))  # the connection is closed, not left open
        assert not answer.startswith(b"HTTP/1.1 200")  # the 60 s answer was cancelled
        assert idle.recv(100) == b""
    finally:
        for conn in conns:
            conn.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def test_chat_reads_the_prompt_from_stdin_without_its_line_break(
    config_file: Path, threaded_fake: FakeProvider
) -> None:
    threaded_fake.script(Reply(text="ok"))
    done = subprocess.run(
        [sys.executable, "-m", "legato", "chat", "gpt", "-", "-c", str(config_file)],
        input="What is two plus two?\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert threaded_fake.requests[0].body["messages"] == [{"role": "user", "content": "What is two plus two?"}]
