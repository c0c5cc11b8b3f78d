"""Reading the bundled workflows: link checks, and UI format -> the API format /prompt takes.

The UI format stores widget values as a positional list; the API format names every input.
The conversion follows the node definitions ComfyUI publishes at /object_info, the way the
frontend does: widget inputs in declaration order, with an extra value after each widget that
has control_after_generate (the seed's "fixed"/"randomize").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
NOTE_NODES = {"Note", "MarkdownNote"}  # the frontend's own nodes: never sent to the server
# The examples, by what they show; the file name is the title ComfyUI's template browser shows.
TEXT_TO_IMAGE = WORKFLOWS / "FLUX.2 flex - Text to image.json"
EDIT_IMAGE = WORKFLOWS / "FLUX.2 flex - Edit an image.json"
MULTI_REFERENCE = WORKFLOWS / "FLUX.2 flex - Edit with references.json"
COST_ESTIMATE = WORKFLOWS / "FLUX.2 flex - Cost estimate.json"
LOCAL_DIFFUSERS = WORKFLOWS / "FLUX.2 flex - Local run, diffusers.json"
LOCAL_COMFYUI = WORKFLOWS / "FLUX.2 flex - Local edit, ComfyUI.json"
EXAMPLES = (TEXT_TO_IMAGE, EDIT_IMAGE, MULTI_REFERENCE, COST_ESTIMATE, LOCAL_DIFFUSERS, LOCAL_COMFYUI)


def workflow_files() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def link_problems(workflow: dict[str, Any]) -> list[str]:
    """Every link joins existing sockets of one type, and both ends list it."""
    nodes = {node["id"]: node for node in workflow["nodes"]}
    problems = []
    for link_id, source, out_slot, target, in_slot, kind in workflow["links"]:
        if source not in nodes or target not in nodes:
            problems.append(f"link {link_id} joins a missing node")
            continue
        outputs, inputs = nodes[source]["outputs"], nodes[target]["inputs"]
        if out_slot >= len(outputs) or in_slot >= len(inputs):
            problems.append(f"link {link_id} uses a missing slot")
            continue
        if link_id not in (outputs[out_slot].get("links") or []) or inputs[in_slot].get("link") != link_id:
            problems.append(f"link {link_id} is not listed on both of its ends")
        if not outputs[out_slot]["type"] == inputs[in_slot]["type"] == kind:
            problems.append(f"link {link_id} joins {outputs[out_slot]['type']} to {inputs[in_slot]['type']}")
    known = {link[0] for link in workflow["links"]}
    for node in workflow["nodes"]:
        for socket in node["inputs"]:
            if socket.get("link") is not None and socket["link"] not in known:
                problems.append(f"node {node['id']} input {socket['name']} names a missing link")
    if workflow["last_link_id"] < max(known, default=0) or workflow["last_node_id"] < max(nodes, default=0):
        problems.append("last_link_id/last_node_id are behind the ids in use")
    return problems


def is_widget(spec: list[Any]) -> bool:
    return isinstance(spec[0], list) or spec[0] in WIDGET_TYPES


def to_api_prompt(workflow: dict[str, Any], object_info: dict[str, Any]) -> dict[str, Any]:
    """The API-format prompt ComfyUI's frontend would queue for this workflow."""
    prompt: dict[str, Any] = {}
    links = {link[0]: link for link in workflow["links"]}
    for node in workflow["nodes"]:
        if node["type"] in NOTE_NODES:
            continue
        definition = object_info[node["type"]]
        values = iter(node.get("widgets_values") or [])
        inputs: dict[str, Any] = {}
        for section in ("required", "optional"):
            for name in definition["input_order"].get(section, []):
                spec = definition["input"][section][name]
                if is_widget(spec):
                    # A widget added after the workflow was saved gets its default, as in the frontend.
                    inputs[name] = next(values, spec[1].get("default") if len(spec) > 1 else None)
                    if len(spec) > 1 and spec[1].get("control_after_generate"):
                        next(values)
        for socket in node["inputs"]:
            if socket.get("link") is not None:
                _, source, out_slot, _, _, _ = links[socket["link"]]
                inputs[socket["name"]] = [str(source), out_slot]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt
