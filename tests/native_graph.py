"""Recording the subgraph Generate and Edit expand into, and checking it against ComfyUI's nodes.

`RecordingBuilder` offers the part of ComfyUI's GraphBuilder the plan uses and keeps the nodes in
the API format /prompt takes; `graph_problems` checks such a graph against the node definitions a
real ComfyUI publishes at /object_info, as ComfyUI's own validation would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NUMBER_TYPES = {"INT": int, "FLOAT": (int, float)}


@dataclass(frozen=True)
class RecordedNode:
    id: str

    def out(self, index: int) -> list:
        return [self.id, index]


@dataclass
class RecordingBuilder:
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def node(self, class_type: str, id: str | None = None, **inputs: Any) -> RecordedNode:
        node_id = id or f"x{len(self.nodes) + 1}"
        self.nodes[node_id] = {"class_type": class_type, "inputs": inputs}
        return RecordedNode(node_id)

    def of(self, class_type: str) -> list[dict[str, Any]]:
        return [node["inputs"] for node in self.nodes.values() if node["class_type"] == class_type]

    def source(self, link: list) -> dict[str, Any]:
        """The node a link comes from."""
        return self.nodes[link[0]]


def graph_problems(graph: dict[str, dict[str, Any]], object_info: dict[str, Any],
                   outside: dict[str, str]) -> list[str]:
    """Every node exists, gets every required input and only known ones; links join matching types;
    widget values are of their type, within range and among a combo's options. `outside` gives the
    type of each node the graph links to outside itself (the user's loaders)."""
    problems = []
    for node_id, node in graph.items():
        definition = object_info.get(node["class_type"])
        if definition is None:
            problems.append(f"{node['class_type']} does not exist")
            continue
        specs = {**definition["input"].get("required", {}), **definition["input"].get("optional", {})}
        missing = set(definition["input"].get("required", {})) - set(node["inputs"])
        problems.extend(f"{node_id} {node['class_type']} lacks {name}" for name in sorted(missing))
        for name, value in node["inputs"].items():
            spec = specs.get(name)
            if spec is None:
                problems.append(f"{node['class_type']} has no input {name}")
            elif isinstance(value, list):
                source = value[0]
                kind = (object_info[graph[source]["class_type"]]["output"][value[1]] if source in graph
                        else outside.get(source))
                if kind != spec[0]:
                    problems.append(f"{node['class_type']}.{name} takes {spec[0]}, gets {kind}")
            else:
                problems.extend(f"{node['class_type']}.{name}: {issue}" for issue in _widget_problems(spec, value))
    return problems


def _widget_problems(spec: list, value: Any) -> list[str]:
    kind, options = spec[0], (spec[1] if len(spec) > 1 else {})
    if isinstance(kind, list) or kind == "COMBO":
        choices = kind if isinstance(kind, list) else options.get("options", [])
        return [] if value in choices else [f"{value!r} not among {choices}"]
    if kind in NUMBER_TYPES:
        if not isinstance(value, NUMBER_TYPES[kind]) or isinstance(value, bool):
            return [f"{value!r} is not {kind}"]
        low, high = options.get("min", float("-inf")), options.get("max", float("inf"))
        return [] if low <= value <= high else [f"{value} outside {low}..{high}"]
    if kind == "STRING":
        return [] if isinstance(value, str) else [f"{value!r} is not a string"]
    if kind == "BOOLEAN":
        return [] if isinstance(value, bool) else [f"{value!r} is not a boolean"]
    return [f"{value!r} given where a {kind} link is needed"]
