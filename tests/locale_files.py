"""The pack's translations as files: reading them, comparing languages, and writing the English one.

ComfyUI reads `locales/<lang>/main.json`, `nodeDefs.json` and `settings.json` from the pack's root
and merges them into its frontend (app/custom_node_manager.py, build_translations). English node
texts are written once, in the Python schemas: `locales/en/nodeDefs.json` is generated from what
ComfyUI publishes at /object_info (`english_node_defs`), and a test fails when the two differ.
Run this file with COMFYUI_PATH and COMFYUI_PYTHON set to rewrite it after changing a schema:

    .venv/bin/python tests/locale_files.py

Keys follow the frontend's own lookups: nodeDefs.<node>.display_name / description,
.inputs.<name>.name / tooltip, .outputs.<index>.name / tooltip; settings.<setting id with "." as
"_">.name; main.json's settingsCategories.<category> and, for the web extension's own words,
flux2Flex.<key>.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCALES = REPO_ROOT / "locales"
DOCS = REPO_ROOT / "web" / "docs"
ENGLISH = "en"
# Every interface language of ComfyUI's frontend 1.58.1 (its Comfy.Locale choices) the pack ships.
LANGUAGES = ("en", "zh", "zh-TW", "ja", "ko", "it")
FILES = ("nodeDefs.json", "main.json", "settings.json")
# Texts the server composes when ComfyUI starts (the list of undelivered paid tasks, the note that
# a ComfyUI lacks native FLUX.2). English shows the server's live text, so the English file leaves
# them out; the other languages translate their fixed part.
SERVER_TEXT = frozenset({
    "nodeDefs.FluxFlexRecoverTask.inputs.task_id.tooltip",
    "nodeDefs.FluxFlexNativeModel.display_name",
    "nodeDefs.FluxFlexNativeModel.description",
})
PLACEHOLDER = re.compile(r"\{\w+\}")
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def read(lang: str, file: str) -> dict[str, Any]:
    return json.loads((LOCALES / lang / file).read_text(encoding="utf-8"))


def catalog(lang: str) -> dict[str, str]:
    """Every text of a language, keyed by its dotted path as the frontend looks it up."""
    flat: dict[str, str] = {}
    for file in FILES:
        prefix = "" if file == "main.json" else file.removesuffix(".json") + "."
        flatten(read(lang, file), prefix, flat)
    return flat


def flatten(value: Any, prefix: str, into: dict[str, str]) -> dict[str, str]:
    """`into`, with every text of `value` under its dotted key."""
    if isinstance(value, dict):
        for key, inner in value.items():
            flatten(inner, f"{prefix}{key}.", into)
    else:
        into[prefix.rstrip(".")] = value
    return into


def placeholders(text: str) -> list[str]:
    return sorted(PLACEHOLDER.findall(text))


def numbers(text: str) -> list[str]:
    """The figures a text states, in the form it writes them (4,194,304 stays 4,194,304)."""
    return sorted(NUMBER.findall(PLACEHOLDER.sub("", text)))


def english_node_defs(object_info: dict[str, Any], node_ids: list[str]) -> dict[str, Any]:
    """nodeDefs.json for English, from the node definitions ComfyUI publishes (the Python schemas)."""
    defs: dict[str, Any] = {}
    for node_id in node_ids:
        info = object_info[node_id]
        inputs: dict[str, Any] = {}
        for section in ("required", "optional"):
            for name, spec in info["input"].get(section, {}).items():
                options = spec[1] if len(spec) > 1 else {}
                inputs[name] = {"name": name, **({"tooltip": options["tooltip"]} if options.get("tooltip") else {})}
                if options.get("control_after_generate"):
                    inputs["control_after_generate"] = {"name": "control after generate"}
        outputs = {str(index): {"name": name, **({"tooltip": tip} if tip else {})}
                   for index, (name, tip) in enumerate(zip(info["output_name"], info.get("output_tooltips") or
                                                           [None] * len(info["output_name"])))}
        entry = {"display_name": info["display_name"], "description": info["description"], "inputs": inputs,
                 "outputs": outputs}
        defs[node_id] = entry
    return _without_server_text(defs)


def _without_server_text(defs: dict[str, Any]) -> dict[str, Any]:
    for key in SERVER_TEXT:
        *path, last = key.removeprefix("nodeDefs.").split(".")
        parent = defs
        for part in path:
            parent = parent.get(part, {})
        parent.pop(last, None)
    return defs


def pack_node_ids(object_info: dict[str, Any]) -> list[str]:
    """The pack's nodes among everything ComfyUI lists, in ComfyUI's order."""
    return [name for name, info in object_info.items()
            if name.startswith("FluxFlex") and info.get("python_module", "").startswith("custom_nodes.")]


def write_english(object_info: dict[str, Any]) -> Path:
    path = LOCALES / ENGLISH / "nodeDefs.json"
    path.write_text(dump(english_node_defs(object_info, pack_node_ids(object_info))), encoding="utf-8")
    return path


def dump(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    """Start the configured ComfyUI with the pack and rewrite locales/en/nodeDefs.json from it."""
    import tempfile

    from comfyui_runner import running_comfyui
    from fakes.bfl_server import FakeBfl

    with FakeBfl() as bfl, tempfile.TemporaryDirectory() as root, running_comfyui(Path(root), bfl) as comfy:
        print(write_english(comfy.client.get("/object_info").json()))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
