"""One refused setting, one message, at the input it names.

ComfyUI files a node's validate_inputs message once for every input the function receives
(execution.py, `custom_validation_failed`): a node whose validation reads all its settings turns
one bad width into a dozen identical errors, the first of them at an unrelated input. This
module folds them back into one error per message, attached to the input the message names
(the engine's messages start with it: "width = 5000 is not allowed: ..."). Plain dicts in and
out, as in ComfyUI's /prompt answer; no ComfyUI import.
"""

from __future__ import annotations

import re
from typing import Any

CUSTOM_VALIDATION = "custom_validation_failed"
FALLBACK_INPUT = "provider"  # where a message that names no input belongs (a missing key)


def named_input(message: str, inputs: list[str]) -> str:
    """The input the message names first (as a whole word), else the provider, else the first."""
    found = [(match.start(), name) for name in inputs
             if (match := re.search(rf"(?<![\w.]){re.escape(name)}(?![\w])", message))]
    if found:
        return min(found)[1]
    return FALLBACK_INPUT if FALLBACK_INPUT in inputs else inputs[0]


def _message(error: dict[str, Any]) -> str:
    """The node's own words: ComfyUI puts "<input> - " in front of them."""
    details = str(error.get("details", ""))
    name = str(error.get("extra_info", {}).get("input_name", ""))
    return details[len(name) + 3:] if details.startswith(f"{name} - ") else details


def fold_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A node's errors with each custom-validation message once, at the input it names."""
    by_message: dict[str, list[str]] = {}
    for error in errors:
        if error.get("type") == CUSTOM_VALIDATION:
            by_message.setdefault(_message(error), []).append(str(error.get("extra_info", {}).get("input_name", "")))
    folded, placed = [], set()
    for error in errors:
        if error.get("type") != CUSTOM_VALIDATION:
            folded.append(error)
            continue
        message = _message(error)
        if message in placed:
            continue
        placed.add(message)
        name = named_input(message, by_message[message])
        folded.append({**error, "details": f"{name} - {message}" if message else name,
                       "extra_info": {**error.get("extra_info", {}), "input_name": name}})
    return folded


def fold_prompt_answer(answer: dict[str, Any], node_types: set[str]) -> dict[str, Any]:
    """ComfyUI's /prompt answer with the errors of the pack's nodes folded, and the summary's
    repeated lines said once."""
    node_errors = answer.get("node_errors")
    if not isinstance(node_errors, dict):
        return answer
    changed = False
    for entry in node_errors.values():
        if isinstance(entry, dict) and entry.get("class_type") in node_types and isinstance(entry.get("errors"), list):
            folded = fold_errors(entry["errors"])
            changed = changed or folded != entry["errors"]
            entry["errors"] = folded
    summary = answer.get("error")
    if changed and isinstance(summary, dict) and isinstance(summary.get("details"), str):
        lines = [line for entry in node_errors.values() if isinstance(entry, dict)
                 for line in (f"{error.get('message')}: {error.get('details')}" for error in entry.get("errors", []))]
        summary["details"] = "\n".join(dict.fromkeys(lines))
    return answer
