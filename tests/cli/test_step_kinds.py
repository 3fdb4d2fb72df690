"""Custom step kinds reach ``legato validate`` and ``legato run`` (real CLI processes):
from the ``step_kinds:`` section of legato.yaml, with the factory in a module beside it,
and from the ``legato.step_kinds`` entry-point group of an installed distribution."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.cli.test_static_checks import ROOT, write

KINDS = """
from legato.errors import SpecError
from legato.spec import StepBuild


def build(spec, ctx):
    if "template" not in spec:
        raise SpecError([ctx.issue("missing 'template'")])

    async def shout(text: str) -> str:
        return text.upper()

    return StepBuild(fn=shout, args={"text": spec["template"]}, description="shout a template")
"""

SPEC = """
name: greet
inputs:
  name: {type: string, default: ada}
steps:
  hello:
    kind: shout
    template: "hello ${inputs.name}"
  again:
    shout: yes
    template: "bye ${steps.hello}"
outputs:
  text: ${steps.again}
"""


def legato(*args: str, cwd: Path, path: tuple[Path, ...] = ()) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LEGATO_CONFIG"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *(str(p) for p in path)])
    command = [str(Path(sys.executable).parent / "legato"), *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def test_a_kind_named_in_legato_yaml_validates_and_runs(tmp_path: Path) -> None:
    write(tmp_path / "proj" / "legato.yaml", "step_kinds:\n  shout: greetkinds:build\n")
    write(tmp_path / "proj" / "greetkinds.py", KINDS)
    write(tmp_path / "proj" / "p.yaml", SPEC)
    checked = legato("validate", "proj/p.yaml", cwd=tmp_path)  # legato.yaml and the module beside the spec
    assert checked.returncode == 0, checked.stderr
    ran = legato("run", "proj/p.yaml", "--json", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["outputs"]["text"] == "BYE HELLO ADA"


def test_an_unknown_kind_suggests_the_configured_one_and_says_where_kinds_come_from(tmp_path: Path) -> None:
    write(tmp_path / "legato.yaml", "step_kinds:\n  shout: ./greetkinds.py:build\n")
    write(tmp_path / "greetkinds.py", KINDS)
    write(tmp_path / "p.yaml", SPEC.replace("kind: shout", "kind: shuot"))
    result = legato("validate", "p.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert "p.yaml:6:" in result.stderr
    assert "unknown step kind 'shuot' (did you mean 'shout'?)" in result.stderr
    assert "step_kinds section of legato.yaml" in result.stderr
    assert "'legato.step_kinds' entry-point group" in result.stderr


def test_a_step_kinds_entry_that_replaces_a_built_in_kind_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "legato.yaml", "step_kinds:\n  llm: greetkinds:build\n")
    write(tmp_path / "p.yaml", SPEC)
    result = legato("validate", "p.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert "legato.yaml:2:" in result.stderr
    assert "step_kinds.llm: 'llm' is a built-in step kind and cannot be replaced" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_kind_from_an_installed_distributions_entry_point_runs(tmp_path: Path) -> None:
    site = tmp_path / "site"
    write(site / "greetkinds.py", KINDS)
    info = site / "greet_kinds-1.0.dist-info"
    write(info / "METADATA", "Metadata-Version: 2.1\nName: greet-kinds\nVersion: 1.0\n")
    write(info / "entry_points.txt", "[legato.step_kinds]\nshout = greetkinds:build\n")
    write(tmp_path / "work" / "p.yaml", SPEC)
    ran = legato("run", "p.yaml", "--json", cwd=tmp_path / "work", path=(site,))
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["outputs"]["text"] == "BYE HELLO ADA"
    missing = legato("validate", "p.yaml", cwd=tmp_path / "work")  # not installed: unknown
    assert missing.returncode == 2
    assert "unknown step kind 'shout'" in missing.stderr
