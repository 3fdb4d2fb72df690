"""``legato validate`` and ``legato plan`` as a newcomer meets them, through the real CLI process:
every error of a file in one pass, no secrets needed, the config found beside the spec."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
models:
  m1:
    provider: openai
    model: gpt-4o-mini
    api_key: env:LEGATO_TEST_UNSET_KEY
"""

BROKEN = """
name: broken
inputs:
  n:
    type: integer
    default: 3
  s:
    type: text
steps:
  one:
    llm: m1
    prompt: hi ${inputs.s}
    max_tokens: -5
  two:
    uses: json:dumps
    with:
      obj: ${steps.nope.output}
  three:
    uses: json:dumps
    map: obj
    with:
      obj: ${inputs.n}
  four:
    uses: json:dumps
    when: ${inputs.s ==}
    with:
      obj: 1
"""


def legato(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    unset = ("LEGATO_CONFIG", "LEGATO_TEST_UNSET_KEY", "LEGATO_TEST_UNSET_URL")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env["PYTHONPATH"] = str(ROOT / "src")
    command = [str(Path(sys.executable).parent / "legato"), *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def test_validate_reports_every_kind_of_error_in_one_pass_sorted(tmp_path: Path) -> None:
    write(tmp_path / "legato.yaml", CONFIG)
    write(tmp_path / "p.yaml", BROKEN)
    result = legato("validate", "p.yaml", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    joined = "\n".join(lines)
    assert "inputs.s.type" in joined  # shape
    assert "steps.one.max_tokens" in joined  # a kind's own range
    assert "'nope'" in joined  # reference
    assert "map over 'obj', the input 'n' declared integer" in joined  # map source
    assert "steps.four.when" in joined  # expression
    assert "5 errors" in result.stderr
    positions = [tuple(int(x) for x in line.split(":")[2:4]) for line in lines]
    assert positions == sorted(positions)


def test_static_commands_need_no_secrets_but_run_and_strict_do(tmp_path: Path) -> None:
    write(tmp_path / "legato.yaml", CONFIG)
    write(tmp_path / "p.yaml", "name: p\nsteps:\n  one:\n    llm: m1\n    prompt: hi\n")
    assert legato("validate", "p.yaml", cwd=tmp_path).returncode == 0
    planned = legato("plan", "--cost", "p.yaml", cwd=tmp_path)
    assert planned.returncode == 0, planned.stderr
    assert "cost estimate" in planned.stdout
    for args in (("validate", "--strict", "p.yaml"), ("run", "p.yaml")):
        result = legato(*args, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert "p.yaml:4:10: steps.one.llm" in result.stderr
        assert "needs the environment variable LEGATO_TEST_UNSET_KEY" in result.stderr


def test_an_env_base_url_is_checked_like_a_secret(tmp_path: Path) -> None:
    config = "models:\n  m1: {provider: openai, model: gpt-4o-mini, api_key: sk, base_url: env:LEGATO_TEST_UNSET_URL}\n"
    write(tmp_path / "legato.yaml", config.replace("api_key: sk, ", ""))
    write(tmp_path / "p.yaml", "name: p\nsteps:\n  one:\n    llm: m1\n    prompt: hi\n")
    assert legato("validate", "p.yaml", cwd=tmp_path).returncode == 0
    strict = legato("validate", "--strict", "p.yaml", cwd=tmp_path)
    assert strict.returncode == 2, strict.stderr
    assert "needs the environment variable LEGATO_TEST_UNSET_URL" in strict.stderr


def test_a_cycle_body_is_checked_for_secrets_like_any_step(tmp_path: Path) -> None:
    write(tmp_path / "legato.yaml", CONFIG)
    body = "    cycle:\n      max_iterations: 2\n      steps:\n        ask: {llm: m1, prompt: hi}\n"
    write(tmp_path / "p.yaml", "name: p\nsteps:\n  refine:\n" + body)
    assert legato("validate", "p.yaml", cwd=tmp_path).returncode == 0
    strict = legato("validate", "--strict", "p.yaml", cwd=tmp_path)
    assert strict.returncode == 2, strict.stderr
    assert "steps.refine.cycle.steps.ask.llm" in strict.stderr
    assert "needs the environment variable LEGATO_TEST_UNSET_KEY" in strict.stderr


def test_config_beside_the_spec_is_found_from_another_directory(tmp_path: Path) -> None:
    result = legato("validate", str(ROOT / "examples" / "multi_provider.yaml"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "ok (pipeline 'multi_provider'" in result.stdout


@pytest.mark.parametrize("spelling", ["int", "integer"])
def test_python_type_names_are_input_types(tmp_path: Path, spelling: str) -> None:
    steps = "steps:\n  one:\n    uses: json:dumps\n    with:\n      obj: ${inputs.n}\n"
    spec = f"name: p\ninputs:\n  n: {spelling}\n{steps}"
    write(tmp_path / "p.yaml", spec)
    result = legato("run", "p.yaml", "--json", "-i", "n=4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
