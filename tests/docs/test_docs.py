"""The README and the docs stay true: the README opens with the two commands, its
example runs, it links every page, ``mkdocs.yml`` navigates every page, and every
``uses:`` in the docs names a function that exists (in ``examples/`` or in a Python
block of the same page)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_the_readme_opens_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = re.search(r"```\w*\n(.*?)```", readme, re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines() if line.strip()]
    assert commands == ["make run", "make test"]
    assert readme.index(first_block.group(0)) < readme.index("## ")


def test_the_readme_example_runs() -> None:
    example = python_blocks((ROOT / "README.md").read_text())[0]
    assert len(example.splitlines()) <= 25
    done = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "'escalate': 'route to the shipping team'" in done.stdout


def test_the_readme_links_every_docs_page() -> None:
    readme = (ROOT / "README.md").read_text()
    linked = set(re.findall(r"\]\(docs/([^)#]+)\)", readme))
    top_level = {p for p in PAGES if "/" not in p}
    assert top_level <= linked, sorted(top_level - linked)
    assert "decisions/" in linked
    for target in linked:
        assert (DOCS / target).exists(), target


def _nav_pages(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [p for item in node for p in _nav_pages(item)]
    if isinstance(node, dict):
        return [p for value in node.values() for p in _nav_pages(value)]
    return []


def test_mkdocs_navigates_every_page() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert config["docs_dir"] == "docs"
    nav = _nav_pages(config["nav"])
    assert sorted(nav) == PAGES
    assert len(set(nav)) == len(nav)


def _functions(source: str) -> set[str]:
    tree = ast.parse(source)
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


def test_every_uses_in_the_docs_names_a_function_that_exists() -> None:
    checked = 0
    for page in PAGES:
        text = (DOCS / page).read_text()
        defined = {fn for block in python_blocks(text) for fn in _functions(block)}
        for file, fn in re.findall(r"uses:\s*\./([\w/]+\.py):(\w+)", text):
            example = ROOT / "examples" / file
            known = _functions(example.read_text()) if example.exists() else defined
            assert fn in known, f"docs/{page}: uses ./{file}:{fn} names nothing"
            checked += 1
    assert checked >= 8


def test_the_project_urls_name_only_the_repository_and_what_is_in_it() -> None:
    import tomllib

    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]
    repo = yaml.safe_load((ROOT / "mkdocs.yml").read_text().split("\nnav:")[0])["repo_url"]
    assert set(urls) == {"Homepage", "Documentation", "Repository", "Issues"}
    for name, url in urls.items():
        assert url == repo or url.startswith(repo + "/"), (name, url)
    assert urls["Issues"] == f"{repo}/issues"
    folder = urls["Documentation"].removeprefix(f"{repo}/tree/main/")
    assert (ROOT / folder / "index.md").is_file()  # the link points at a folder of this repository
