"""Every word the pack shows exists in every shipped language, with the same placeholders and figures.

A node, input, output, setting or web-extension string that exists in English but not in a shipped
language (or only there) fails here by its key; so does a placeholder or figure that a translation
drops or writes differently, and a missing help page. English node texts come from the Python
schemas: with ComfyUI configured, locales/en/nodeDefs.json is compared with what ComfyUI publishes,
so a changed tooltip or a new input fails until the English file is regenerated
(tests/locale_files.py) and the new key translated.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from comfyui_flux2_flex.nodes.logic.node_words import SERVER_SECTIONS
from comfyui_flux2_flex.nodes.logic.price_preview import PRICE_WORDS
from comfyui_runner import needs_comfyui
from locale_files import (
    DOCS, ENGLISH, LANGUAGES, LOCALES, SERVER_TEXT, catalog, english_node_defs, flatten, numbers, pack_node_ids,
    placeholders, read,
)
from workflow_format import load, workflow_files

WEB = Path(__file__).resolve().parent.parent / "web"
TRANSLATED = [lang for lang in LANGUAGES if lang != ENGLISH]
ENGLISH_TEXTS = catalog(ENGLISH)
NODE_IDS = list(read(ENGLISH, "nodeDefs.json"))
WEB_SOURCES = sorted(WEB.glob("*.js"))
T_CALL = re.compile(r"""\bt\(\s*["']([\w.]+)["']""")
# The server's own words (receipt, status) are looked up by "section.key" strings in the node logic.
SERVER_SOURCES = sorted((Path(__file__).resolve().parent.parent / "nodes" / "logic").glob("*.py"))
SERVER_KEY = re.compile(r"""["']((?:%s)\.\w+)["']""" % "|".join(SERVER_SECTIONS))
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)")
FRONTEND_LOCALES = {"en", "zh", "zh-TW", "ru", "ja", "ko", "fr", "es", "ar", "tr", "pt-BR", "fa", "de", "he", "it"}


def test_the_shipped_languages_are_the_frontends_and_each_has_every_file() -> None:
    assert {path.name for path in LOCALES.iterdir()} == set(LANGUAGES)
    assert set(LANGUAGES) <= FRONTEND_LOCALES, "a folder ComfyUI's language setting never picks"
    assert {"zh", "zh-TW", "ja", "ko", "it"} <= set(LANGUAGES)


def test_english_leaves_the_servers_live_texts_to_the_server() -> None:
    assert not SERVER_TEXT & set(ENGLISH_TEXTS)


@pytest.mark.parametrize("lang", TRANSLATED)
def test_a_language_has_exactly_the_english_keys(lang: str) -> None:
    texts = catalog(lang)
    expected = set(ENGLISH_TEXTS) | SERVER_TEXT
    assert sorted(expected - set(texts)) == [], f"{lang} lacks these keys"
    assert sorted(set(texts) - expected) == [], f"{lang} has keys English does not"
    assert [key for key, text in texts.items() if not isinstance(text, str) or not text.strip()] == []


@pytest.mark.parametrize("lang", TRANSLATED)
def test_placeholders_and_figures_are_kept(lang: str) -> None:
    """{name} placeholders as in English; every figure of the English text written the same way
    (4,194,304 stays 4,194,304; a translation may add a figure of its own grammar, such as 1/4)."""
    texts = catalog(lang)
    wrong_placeholders = [key for key, text in ENGLISH_TEXTS.items() if placeholders(texts[key]) != placeholders(text)]
    assert wrong_placeholders == []
    lost_figures = {key: sorted(set(numbers(text)) - set(numbers(texts[key]))) for key, text in ENGLISH_TEXTS.items()}
    assert {key: lost for key, lost in lost_figures.items() if lost} == {}


def test_every_key_the_web_extension_asks_for_is_in_english_and_every_english_one_is_asked_for() -> None:
    used = {key for path in WEB_SOURCES for key in T_CALL.findall(path.read_text(encoding="utf-8"))}
    used |= {f"price.{key}" for key in PRICE_WORDS}  # the price line's parts, as the server names them
    used |= {key for path in SERVER_SOURCES for key in SERVER_KEY.findall(path.read_text(encoding="utf-8"))}
    known = {key.removeprefix("flux2Flex.") for key in ENGLISH_TEXTS if key.startswith("flux2Flex.")}
    assert sorted(used - known) == [], "asked for but not in locales/en/main.json"
    assert sorted(known - used) == [], "in locales/en/main.json but never shown"


def test_the_price_lines_english_words_are_the_servers() -> None:
    """The server writes the price line in English from PRICE_WORDS; the browser shows the same
    parts from the locale files, so the English there must be the server's."""
    assert {key: ENGLISH_TEXTS.get(f"flux2Flex.price.{key}") for key in PRICE_WORDS} == PRICE_WORDS


def test_the_settings_entry_and_its_categories_are_translated() -> None:
    source = "\n".join(path.read_text(encoding="utf-8") for path in WEB_SOURCES)
    settings = re.findall(r'id: "([\w.]+)",\s*category: \[([^\]]*)\],\s*name: "([^"]+)",(?:\s*tooltip: "([^"]+)")?',
                          source)
    assert settings, "the web extension's settings entries are found"
    for setting_id, categories, name, tooltip in settings:
        key = f"settings.{setting_id.replace('.', '_')}"
        assert ENGLISH_TEXTS[f"{key}.name"] == name
        assert ENGLISH_TEXTS.get(f"{key}.tooltip", "") == tooltip
        for category in re.findall(r'"([^"]+)"', categories)[1:]:  # the first is the pack's name
            assert ENGLISH_TEXTS[f"settingsCategories.{category.replace('.', '_')}"] == category


def help_pages(node_id: str) -> dict[str, Path]:
    """The help pages ComfyUI's frontend looks for: docs/<node>/<lang>.md, docs/<node>.md for English."""
    return {ENGLISH: DOCS / f"{node_id}.md", **{lang: DOCS / node_id / f"{lang}.md" for lang in TRANSLATED}}


@pytest.mark.parametrize("node_id", NODE_IDS)
def test_every_node_has_a_help_page_in_every_language_naming_each_input(node_id: str) -> None:
    inputs = [name for name in read(ENGLISH, "nodeDefs.json")[node_id]["inputs"] if name != "control_after_generate"]
    english_figures = None
    for lang, path in help_pages(node_id).items():
        assert path.is_file(), f"no help page {path.relative_to(DOCS)}"
        text = path.read_text(encoding="utf-8")
        assert [name for name in inputs if f"`{name}`" not in text] == [], f"{path.name} misses inputs"
        pictures = IMAGE.findall(text)
        assert pictures, f"{path.relative_to(DOCS)} shows no example picture"
        assert [p for p in pictures if not (DOCS / p).is_file()] == [], "pictures resolve against docs/"
        if lang == ENGLISH:
            english_figures = set(numbers(text))
        else:
            assert sorted(english_figures - set(numbers(text))) == [], f"{lang} help page lost figures"


def test_no_help_page_for_a_node_the_pack_does_not_have() -> None:
    pages = {path.stem for path in DOCS.glob("*.md")} | {path.name for path in DOCS.iterdir() if path.is_dir()}
    assert pages - {"images"} == set(NODE_IDS)


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.stem)
def test_bundled_workflows_hold_no_translated_names(path: Path) -> None:
    """A workflow stores values and socket names, never what a language shows, so it loads the
    same in every language."""
    for node in load(path)["nodes"]:
        for socket in [*node.get("inputs", []), *node.get("outputs", [])]:
            assert socket.get("localized_name", socket["name"]) == socket.get("label", socket["name"]) == \
                socket["name"], socket
        assert node.get("title", "").isascii(), node["title"]


@needs_comfyui
def test_the_english_node_texts_are_the_python_schemas(object_info: dict[str, Any]) -> None:
    """locales/en/nodeDefs.json is what ComfyUI publishes from the schemas; after a schema change,
    rerun tests/locale_files.py and translate the keys the other tests then name."""
    generated = flatten(english_node_defs(object_info, pack_node_ids(object_info)), "nodeDefs.", {})
    shipped = {key: text for key, text in ENGLISH_TEXTS.items() if key.startswith("nodeDefs.")}
    assert sorted(set(generated) ^ set(shipped)) == [], "keys differ from the schemas"
    assert {key: text for key, text in generated.items() if shipped[key] != text} == {}, "texts differ from the schemas"
    published = flatten({node: object_info[node] for node in NODE_IDS}, "nodeDefs.", {})
    server_keys = {key.replace(".inputs.", ".input.required.").removesuffix(".tooltip") for key in SERVER_TEXT}
    assert {key for key in server_keys if not any(k.startswith(key) for k in published)} == set(), \
        "a server text no schema has any more"
