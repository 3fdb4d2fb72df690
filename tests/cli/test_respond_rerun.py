"""``legato runs respond`` and ``legato runs rerun`` as real CLI subprocesses on a SQLite store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PIPELINE = """\
name: refund
inputs:
  amount: {type: number}
  note: {type: string, default: none}
steps:
  total:
    uses: ./steps.py:total
  approve:
    wait:
      kind: approval
      question: Refund ${steps.total} EUR?
  pay:
    uses: ./steps.py:pay
    when: steps.approve
    with: {total: "${steps.total}", note: "${inputs.note}", prefix: "paid"}
outputs:
  paid: ${steps.pay}
"""

STEPS = """\
def total(amount):
    with open("total.log", "a") as f:
        f.write("called\\n")
    return amount * 2

def pay(total, note, prefix):
    return f"{prefix} {total} ({note})"
"""


def legato(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", "import sys; from legato.cli import main; sys.argv[0] = 'legato'; main()", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, env=dict(os.environ))


def test_respond_then_rerun(tmp_path: Path) -> None:
    (tmp_path / "refund.yaml").write_text(PIPELINE)
    (tmp_path / "steps.py").write_text(STEPS)
    first = legato(tmp_path, "run", "refund.yaml", "-i", "amount=5")
    assert first.returncode == 0, first.stderr
    assert "waiting run" in first.stdout
    assert "Refund 10 EUR?" in first.stdout
    listed = json.loads(legato(tmp_path, "runs", "list", "--json").stdout)
    run_id = listed[0]["id"]
    assert listed[0]["status"] == "waiting"

    bad = legato(tmp_path, "runs", "respond", run_id[:10], "approve", "--value", '"yes"')
    assert bad.returncode == 2
    assert "'yes' is not of type 'boolean'" in bad.stderr
    assert legato(tmp_path, "runs", "respond", run_id, "approve", "--value", "{oops").returncode == 2
    assert legato(tmp_path, "runs", "respond", run_id, "pay", "--approve").returncode == 2
    done = legato(tmp_path, "runs", "respond", run_id, "approve", "--approve", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["outputs"] == {"paid": "paid 10 (none)"}
    again = legato(tmp_path, "runs", "respond", run_id, "approve", "--approve")
    assert again.returncode == 2
    assert "is not waiting for an answer" in again.stderr

    rerun = legato(
        tmp_path, "runs", "rerun", run_id, "--from", "pay", "-i", "note=late", "--set", "pay.with.prefix=refunded",
        "--json",
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["outputs"] == {"paid": "refunded 10 (late)"}
    assert (tmp_path / "total.log").read_text().count("called") == 1  # total and the answer were reused
    upstream = legato(tmp_path, "runs", "rerun", run_id, "--from", "pay", "--set", "total.with.amount=1")
    assert upstream.returncode == 2
    assert "its stored output is reused" in upstream.stderr
    typo = legato(tmp_path, "runs", "rerun", run_id, "--from", "pai")
    assert typo.returncode == 2
    assert "did you mean 'pay'?" in typo.stderr
