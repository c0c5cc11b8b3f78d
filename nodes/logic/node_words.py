"""The pack's own words that the server writes onto a node (a run's receipt and its status text),
in the language of the browser that queued the run.

The browser shows the pack's other words from locales/<lang>/main.json (served by ComfyUI at
/i18n); the receipt and the status are written here, on the server, since they also leave the node
as its `report` output and as ComfyUI's progress text. So the server reads the same files: one
place for every language. Figures, sizes, seeds, provider names, task ids and the providers' and
engine's own messages go in as values and stay as they are.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

LOCALES = Path(__file__).resolve().parents[2] / "locales"  # nodes/logic/ -> the pack's root
ENGLISH = "en"
NAMESPACE = "flux2Flex"
SERVER_SECTIONS = ("report", "status")  # the parts of main.json the server writes with


@functools.cache
def shipped_languages() -> frozenset[str]:
    return frozenset(path.parent.name for path in LOCALES.glob("*/main.json"))


@functools.cache
def _catalog(lang: str) -> dict[str, str]:
    """`section.key` -> text for the server's sections of one language's main.json."""
    words = json.loads((LOCALES / lang / "main.json").read_text(encoding="utf-8")).get(NAMESPACE, {})
    return {f"{section}.{key}": text for section in SERVER_SECTIONS
            for key, text in words.get(section, {}).items() if isinstance(text, str)}


class Words:
    """`words("report.task", provider="bfl", task="t-9")`: the text in this language, else English."""

    def __init__(self, lang: str = ENGLISH) -> None:
        self.lang = lang if lang in shipped_languages() else ENGLISH

    def __call__(self, key: str, **values: object) -> str:
        text = _catalog(self.lang).get(key) or _catalog(ENGLISH)[key]
        return text.format(**values)


ENGLISH_WORDS = Words()
