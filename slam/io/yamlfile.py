"""The one YAML reader: run configurations, camera calibrations and dataset sensor files.

A mapping is returned together with the line of every mapping key (by the id of the mapping that
holds it), so that callers can name FILE:LINE of a bad key. OpenCV-style files ('%YAML:1.0'
headers, '!!opencv-matrix' tags), which PyYAML rejects as they are, are accepted.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

import yaml

from slam.errors import FormatError
from slam.io.text import read_text


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers the line of every mapping key."""

    key_lines: dict[int, dict[Any, int]]


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    mapping = yaml.SafeLoader.construct_mapping(loader, node, deep=deep)
    lines = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, typing.Hashable):
            lines[key] = key_node.start_mark.line + 1
    loader.key_lines[id(mapping)] = lines
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml_lines(path: str | Path, kind: str = "YAML file") -> tuple[Any, dict[int, dict[Any, int]]]:
    """(document, {id(mapping): {key: line}}) of a YAML file; errors name the file and line."""
    path = Path(path)
    text = read_text(path, kind)
    # OpenCV writes '%YAML:1.0' (PyYAML wants '%YAML 1.0') and a custom matrix tag: drop both, keep
    # the line count so that line numbers stay those of the file
    text = re.sub(r"^%YAML[: ]?\d\.\d.*$", "", text, flags=re.M).replace("!!opencv-matrix", "")
    loader = _LineLoader(text)
    loader.key_lines = {}
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise FormatError(f"invalid YAML: {getattr(exc, 'problem', None) or exc}", path,
                          None if mark is None else mark.line + 1) from None
    finally:
        loader.dispose()
    return data, loader.key_lines


def read_yaml(path: str | Path, kind: str = "YAML file") -> dict[str, Any]:
    """A YAML file that must hold a mapping (key: value lines)."""
    data, _ = read_yaml_lines(path, kind)
    if not isinstance(data, dict):
        raise FormatError("expected a YAML mapping (key: value lines)", path)
    return data
