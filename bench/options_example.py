"""The worked example of docs/analyze.md, from a real run.

Serves ``gpt-4o`` with the fake provider (``options_example/fake.yaml``: lognormal
latency, median 250 ms, and 8% server errors), load-tests
``options_example/pipeline.yaml`` in-process with ``legato bench`` (8 runs/s for
30 s over the 240 questions of ``questions.jsonl``, 29% of them asked before;
objectives p95 <= 2 s and errors <= 1%), then asks ``legato analyze --options``
what to change, from the same runs. Writes the plot to
``docs/images/bench-answer_with_sources.svg``, the bench report and the options to
``bench/results/options_example.json``, and prints both tables.
Run: ``python bench/options_example.py``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
EXAMPLE = ROOT / "options_example"
PLOT = ROOT.parent / "docs" / "images" / "bench-answer_with_sources.svg"
RESULTS = ROOT / "results" / "options_example.json"
LEGATO = str(Path(sys.executable).parent / "legato")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the fake provider did not listen on port {port}")


def _legato(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPTIONS_EXAMPLE_KEY": "sk-fake"}  # the fake provider takes any key
    return subprocess.run([LEGATO, *args], capture_output=True, text=True, check=False, cwd=EXAMPLE, env=env)


def main() -> None:
    port = _free_port()
    fake = subprocess.Popen([LEGATO, "fake-provider", "--script", str(EXAMPLE / "fake.yaml"), "--port", str(port)])
    try:
        _wait_for(port)
        with tempfile.TemporaryDirectory(prefix="legato-options-") as tmp:
            config = Path(tmp) / "legato.yaml"
            config.write_text(
                f"models:\n  gpt-4o:\n    provider: openai\n    model: gpt-4o\n"
                f"    base_url: http://127.0.0.1:{port}/v1\n    api_key: env:OPTIONS_EXAMPLE_KEY\n"
            )
            store = f"sqlite:///{Path(tmp) / 'runs.db'}"
            common = ["--config", str(config), "--database-url", store]
            bench = _legato("bench", "pipeline.yaml", "--rate", "8/s", "--duration", "30s", "--inputs",
                            "questions.jsonl", "--slo", "p95=2s", "--slo", "errors=1%", "--target", "100/s",
                            "--plot", os.path.relpath(PLOT, EXAMPLE), *common)  # fmt: skip
            options = _legato("analyze", "pipeline.yaml", "--options", "--last", "1000", "--no-journal", *common)
            data = _legato("analyze", "pipeline.yaml", "--options", "--last", "1000", "--no-journal", "--json", *common)
    finally:
        fake.terminate()
        fake.wait(10)
    for step in (bench, options):
        if step.returncode not in (0, 1):  # 1: an objective failed, which the example shows
            raise SystemExit(step.stderr or step.stdout)
    print(bench.stdout)
    print(options.stdout)
    load = os.getloadavg()
    result = {"load_average": load, "bench": bench.stdout, "options": json.loads(data.stdout)["options"]}
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"load average {load[0]:.2f}; wrote {PLOT} and {RESULTS}")


if __name__ == "__main__":
    main()
