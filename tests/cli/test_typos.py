"""Each typo a newcomer makes gives exactly one located error with a suggestion (real CLI process)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tests.cli.test_static_checks import legato, write

CONFIG = "models:\n  fast:\n    provider: openai\n    model: gpt-4o-mini\n    api_key: env:LEGATO_TEST_UNSET_KEY\n"
LLM_TYPO = "name: p\nsteps:\n  one:\n    llm: fast\n    promt: hi\n"
TASK_TYPO = "name: p\nsteps:\n  one:\n    task: sentimnt\n    with: {text: x}\n"
OPTION_TYPO = "name: p\nsteps:\n  one:\n    task: classify\n    options: {lables: [a, b]}\n    with: {text: x}\n"
FIELD_TYPO = "name: p\nsteps:\n  one:\n    task: sentiment\n    timout: 2\n    with: {text: x}\n"
AGENT_TYPO = "name: p\nsteps:\n  one:\n    agent: fast\n    promt: hi\n"
MAP_TYPO = "name: p\nsteps:\n  one:\n    uses: json:dumps\n    map: tickt\n    with:\n      ticket: [1, 2]\n"

CASES = {
    "chat model": (CONFIG, None, ("chat", "fsat", "hi"), "unknown model 'fsat' (did you mean 'fast'?)", None),
    "chat provider": (CONFIG, None, ("chat", "opnai/gpt-4o", "hi"), "unknown provider 'opnai'", "'openai'"),
    "llm field": (
        CONFIG,
        LLM_TYPO,
        ("validate", "p.yaml"),
        "unknown field 'promt' (did you mean 'prompt'?)",
        "p.yaml:5:12",
    ),
    "config section": (
        CONFIG.replace("models:", "modles:"),
        LLM_TYPO,
        ("validate", "p.yaml"),
        "unknown section 'modles' (did you mean 'models'?)",
        "legato.yaml:2:3",
    ),
    "map parameter": (CONFIG, MAP_TYPO, ("validate", "p.yaml"), "(did you mean 'ticket'?)", "p.yaml:5:10"),
    "task name": (
        CONFIG,
        TASK_TYPO,
        ("validate", "p.yaml"),
        "got 'sentimnt' (did you mean 'sentiment'?)",
        "p.yaml:4:11",
    ),
    "task option": (
        CONFIG,
        OPTION_TYPO,
        ("validate", "p.yaml"),
        "unknown option 'lables' of task 'classify' (did you mean 'labels'?)",
        "p.yaml:5:23",
    ),
    "task step field": (
        CONFIG,
        FIELD_TYPO,
        ("validate", "p.yaml"),
        "'timout' (did you mean 'timeout'?)",
        "p.yaml:5:13",
    ),
    "agent field": (
        CONFIG,
        AGENT_TYPO,
        ("validate", "p.yaml"),
        "unknown field 'promt' (did you mean 'prompt'?)",
        "p.yaml:5:12",
    ),
    "plan format": (
        CONFIG,
        LLM_TYPO.replace("promt", "prompt"),
        ("plan", "p.yaml", "--format", "mermiad"),
        "'mermaid'",
        None,
    ),
    "runs status": (CONFIG, None, ("runs", "list", "--status", "falied"), "(did you mean 'failed'?)", None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_typo_gives_one_located_error_with_a_suggestion(tmp_path: Path, case: str) -> None:
    config, spec, args, expected, where = CASES[case]
    write(tmp_path / "legato.yaml", config)
    if spec is not None:
        write(tmp_path / "p.yaml", spec)
    result = legato(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert expected in errors[0]
    assert "did you mean" in errors[0]
    if where is not None:
        assert where in errors[0]
    assert not re.search(r"Extra inputs are not permitted|Field required", result.stderr)
