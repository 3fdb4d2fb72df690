"""``legato.yaml``: one file, one section per concern.

The root file is parsed once; each package validates its own section with its own
pydantic model through :meth:`LegatoConfig.section`, so the config layer does not
import every package (``models`` belongs to providers, ``groups`` to routing,
``cache``/``budgets`` to cache, ``server`` to the server...). Errors name the field
and the file:line:column.

Secrets are never written in the file: a value ``env:NAME`` is replaced by the
environment variable ``NAME`` when the section is read (:func:`resolve_env`). A
missing variable resolves to ``None`` so that a model without its key can be
reported as unavailable rather than crash the whole config.

Lookup order for the file (:func:`find_config`, the same for the CLI and
:func:`legato.spec.load_pipeline`): an explicit path, ``$LEGATO_CONFIG``,
``legato.yaml`` beside the pipeline file, then ``./legato.yaml``.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from legato._yaml import YamlSyntaxError, load_yaml, locate
from legato.errors import ConfigError

__all__ = ["LegatoConfig", "find_config", "resolve_env"]

T = TypeVar("T", bound=BaseModel)

KNOWN_SECTIONS = frozenset(
    {
        "models",
        "queues",
        "schedules",
        "groups",
        "routing",
        "cache",
        "budgets",
        "store",
        "server",
        "observe",
        "journal",
        "pipelines",
        "retention",
        "tasks",
        "mcp_servers",
        "step_kinds",
    }
)


def resolve_env(value: Any) -> Any:
    """Replace every ``env:NAME`` string (recursively) by ``os.environ.get(NAME)``."""
    if isinstance(value, str) and value.startswith("env:"):
        return os.environ.get(value[4:])
    if isinstance(value, Mapping):
        return {k: resolve_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_env(v) for v in value]
    return value


def find_config(path: str | Path | None = None, *, spec: str | Path | None = None) -> Path | None:
    """The config file to read: ``path``, ``$LEGATO_CONFIG``, ``legato.yaml`` beside
    the pipeline file ``spec``, then ``./legato.yaml``; ``None`` when there is none."""
    if path is not None:
        return Path(path)
    env = os.environ.get("LEGATO_CONFIG")
    if env:
        return Path(env)
    candidates = [Path(spec).parent / "legato.yaml"] if spec is not None else []
    candidates.append(Path("legato.yaml"))
    return next((c for c in candidates if c.is_file()), None)


class LegatoConfig:
    """The parsed root of a ``legato.yaml`` (or an empty config when there is none)."""

    def __init__(self, data: Mapping[str, Any] | None = None, *, source: str | None = None) -> None:
        self.data: Mapping[str, Any] = data or {}
        self.source = source
        self.base_dir = Path(source).parent if source else Path.cwd()
        unknown = sorted(set(self.data) - KNOWN_SECTIONS)
        if unknown:
            raise ConfigError("\n".join(self._unknown_section(name) for name in unknown))

    def _unknown_section(self, name: str) -> str:
        pos = locate(self.data, (name,))
        where = f"{self.source}:{pos[0]}:{pos[1]}" if self.source and pos else self.source or "config"
        match = difflib.get_close_matches(name, sorted(KNOWN_SECTIONS), n=1, cutoff=0.6)
        hint = f" (did you mean {match[0]!r}?)" if match else ""
        return f"{where}: unknown section {name!r}{hint}; known sections: {', '.join(sorted(KNOWN_SECTIONS))}"

    @classmethod
    def load(cls, path: str | Path | None = None, *, spec: str | Path | None = None) -> LegatoConfig:
        """Read the config :func:`find_config` finds (``spec``: the pipeline file it serves)."""
        found = find_config(path, spec=spec)
        if found is None:
            return cls()
        if not found.exists():
            raise ConfigError(f"config file not found: {found}")
        try:
            data = load_yaml(found)
        except YamlSyntaxError as exc:
            where = f"{exc.file}:{exc.line}:{exc.column}" if exc.line else str(exc.file)
            raise ConfigError(f"{where}: {exc}") from exc
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{found}: the top level must be a mapping of sections")
        return cls(data, source=str(found))

    def raw(self, name: str) -> Any:
        return self.data.get(name)

    def section(self, name: str, model: type[T], *, resolve_secrets: bool = True) -> T:
        """Validate section ``name`` with ``model``; a missing section gives the defaults."""
        raw = self.data.get(name)
        value = resolve_env(raw) if resolve_secrets else raw
        try:
            return model.model_validate(value if value is not None else {})
        except ValidationError as exc:
            raise ConfigError(self.describe(exc, name)) from exc

    def describe(self, exc: ValidationError, name: str) -> str:
        """Turn a pydantic error into lines that name the field and file:line:column."""
        lines = []
        section_data = self.data.get(name)
        for err in exc.errors():
            loc = tuple(err["loc"])
            field = ".".join([name, *(str(p) for p in loc)])
            pos = locate(section_data, loc) if section_data is not None else None
            where = self.source or "config"
            if pos is not None and self.source:
                where = f"{self.source}:{pos[0]}:{pos[1]}"
            lines.append(f"{where}: {field}: {err['msg']}")
        return "\n".join(lines)
