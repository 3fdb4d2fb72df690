"""What ``load_pipeline`` finds on its own: the config (``$LEGATO_CONFIG``, beside the
file, the working directory) and ``uses:`` packages in the pipeline's folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from legato.errors import SpecError
from legato.spec import load_pipeline

SPEC = "name: p\nsteps:\n  one:\n    llm: m1\n    prompt: hi\n"


def config(path: Path, model: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    cfg = path / "legato.yaml"
    cfg.write_text(
        f"models:\n  {model}:\n    provider: openai\n    model: gpt-4o-mini\n    api_key: env:LEGATO_TEST_UNSET_KEY\n",
        encoding="utf-8",
    )
    return cfg


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LEGATO_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)


def test_the_config_beside_the_file_comes_before_the_working_directory(tmp_path: Path) -> None:
    config(tmp_path, "other")  # ./legato.yaml without m1
    config(tmp_path / "specs", "m1")
    spec = tmp_path / "specs" / "p.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    assert load_pipeline(spec).name == "p"


def test_legato_config_comes_before_the_file_beside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config(tmp_path / "specs", "m1")
    monkeypatch.setenv("LEGATO_CONFIG", str(config(tmp_path / "env", "other")))
    spec = tmp_path / "specs" / "p.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    with pytest.raises(SpecError, match="unknown model 'm1'"):
        load_pipeline(spec)


def test_the_working_directory_config_is_read_for_text(tmp_path: Path) -> None:
    config(tmp_path, "m1")
    assert load_pipeline(SPEC).name == "p"


def test_uses_finds_a_package_in_the_pipeline_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "specs" / "mysteps_beside"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "text.py").write_text("async def shout(text: str) -> str:\n    return text.upper()\n")
    spec = tmp_path / "specs" / "p.yaml"
    spec.write_text("name: p\nsteps:\n  one:\n    uses: mysteps_beside.text:shout\n    with:\n      text: hi\n")
    monkeypatch.setattr(sys, "path", list(sys.path))
    try:
        assert "one" in load_pipeline(spec).steps
    finally:
        for name in [m for m in sys.modules if m.startswith("mysteps_beside")]:
            del sys.modules[name]


def test_a_missing_package_names_the_folders_searched(tmp_path: Path) -> None:
    spec = tmp_path / "p.yaml"
    spec.write_text("name: p\nsteps:\n  one:\n    uses: nosuchpkg_x.mod:fn\n")
    with pytest.raises(SpecError) as caught:
        load_pipeline(spec)
    message = caught.value.issues[0].message
    assert "no module named 'nosuchpkg_x'" in message
    assert f"the pipeline's folder {tmp_path.resolve()}" in message
    assert "Python path" in message
