"""YAML loading that remembers where every value came from.

PyYAML's safe loader builds plain Python values and forgets positions. Validation
errors must name ``file:line:column``, so this loader builds :class:`LocatedDict`
and :class:`LocatedList` (subclasses of dict/list, so the rest of the code does not
care) that record the 1-based line and column of each key/item. :func:`locate`
maps a pydantic-style location tuple back to a position.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import yaml

from legato.errors import YamlSyntaxError

__all__ = ["LocatedDict", "LocatedList", "Position", "YamlSyntaxError", "load_yaml", "locate"]

Position = tuple[int, int]  # (line, column), 1-based


class LocatedDict(dict[Any, Any]):
    """A dict that knows the position of each key's value and of itself."""

    pos: Position = (1, 1)
    key_pos: dict[Hashable, Position]


class LocatedList(list[Any]):
    """A list that knows the position of each item and of itself."""

    pos: Position = (1, 1)
    item_pos: list[Position]


def _pos(node: yaml.Node) -> Position:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class _Loader(yaml.SafeLoader):
    def construct_located_mapping(self, node: yaml.MappingNode) -> LocatedDict:
        self.flatten_mapping(node)
        result = LocatedDict()
        result.pos = _pos(node)
        result.key_pos = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, "found unhashable key", key_node.start_mark
                )
            if key in result:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark
                )
            result[key] = self.construct_object(value_node, deep=True)
            result.key_pos[key] = _pos(value_node)
        return result

    def construct_located_sequence(self, node: yaml.SequenceNode) -> LocatedList:
        result = LocatedList(self.construct_object(child, deep=True) for child in node.value)
        result.pos = _pos(node)
        result.item_pos = [_pos(child) for child in node.value]
        return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _Loader.construct_located_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _Loader.construct_located_sequence)


def load_yaml(source: str | Path, *, text: str | None = None) -> Any:
    """Load one YAML document from a file (or ``text``, with ``source`` naming it).

    Raises :class:`YamlSyntaxError` with file, line and column on a syntax error or
    a duplicate key.
    """
    name = str(source)
    if text is None:
        try:
            text = Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            raise YamlSyntaxError(f"cannot read {name}: {exc.strerror or exc}", name, None, None) from exc
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        col = mark.column + 1 if mark else None
        problem = exc.problem or str(exc)
        if exc.context and "duplicate" not in (exc.problem or ""):
            problem = f"{exc.context}: {problem}"
        raise YamlSyntaxError(f"invalid YAML: {problem}", name, line, col) from exc
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(f"invalid YAML: {exc}", name, None, None) from exc


def locate(data: Any, path: Sequence[Any]) -> Position | None:
    """Position of the value at ``path`` (keys and indexes), or of its nearest parent."""
    best: Position | None = getattr(data, "pos", None)
    node = data
    for part in path:
        if isinstance(node, LocatedDict) and part in node:
            best = node.key_pos.get(part, best)
            node = node[part]
        elif isinstance(node, LocatedList) and isinstance(part, int) and 0 <= part < len(node):
            best = node.item_pos[part]
            node = node[part]
        else:
            break
    return best
