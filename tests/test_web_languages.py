"""The pack in the user's language, in a real browser: ComfyUI's Comfy.Locale set to Japanese and to
traditional Chinese, in the classic canvas and in the Vue node view.

What a user sees is checked against the pack's locale files: the node's name, a widget's label, a
tooltip, the price line and the help page in the node's info panel. A workflow saved in one
language opens and runs in the other with the same values. On a frontend that does not translate
custom nodes (ComfyUI 0.3.64's 1.27.10 may not), the pack must still load, price and run in English.
Same requirements as test_web_extension.py (ComfyUI, Chromium, playwright).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from locale_files import DOCS, catalog
from test_web_extension import (  # noqa: F401 (the fixture, and the skips without ComfyUI or Chromium)
    BrowserSession, frontend_version, open_workflow, pytestmark, session,
)
from workflow_format import WORKFLOWS

EXAMPLE = WORKFLOWS / "FLUX.2 flex - Text to image.json"
NODE = "FluxFlexGenerate"
WIDGET = "provider"
LOCALE_SETTING = "Comfy.Locale"
ENGLISH = catalog("en")


def node_text(lang: str, key: str) -> str:
    return catalog(lang)[f"nodeDefs.{NODE}.{key}"]


def switch_locale(page, lang: str) -> bool:
    """Set ComfyUI's language as its settings dialog does; True once a freshly loaded example shows
    the pack's node name in it. The frontend reloads the node definitions after a change, but not
    always when the change comes right after the page loaded: the test asks for that reload itself."""
    page.evaluate(f"app.extensionManager.setting.set('{LOCALE_SETTING}', '{lang}')")
    page.evaluate("app.extensionManager.command.execute('Comfy.RefreshNodeDefinitions')")
    title = catalog(lang).get(f"nodeDefs.{NODE}.display_name") or ENGLISH[f"nodeDefs.{NODE}.display_name"]
    return page.evaluate("""async ([graph, type, title]) => {
        for (let tries = 0; tries < 15; tries++) {
            await app.loadGraphData(structuredClone(graph));
            if (app.graph._nodes.find(n => n.type === type)?.title === title) return true;
            await new Promise(done => setTimeout(done, 1000));
        }
        return false; }""", [json.loads(EXAMPLE.read_text(encoding="utf-8")), NODE, title])


@pytest.fixture
def english_afterwards(session: BrowserSession) -> Iterator[BrowserSession]:  # noqa: F811 (fixture)
    """The other browser tests read English: every test here leaves the page in English."""
    yield session
    switch_locale(session.page, "en")


def shown_title(page, view: str) -> str:
    if view == "vue":
        return page.locator(f"[data-node-id='{generate_id(page)}'] [data-testid='node-title']").first.inner_text()
    return page.evaluate(f"app.graph._nodes.find(n => n.type === '{NODE}').title")


def generate_id(page) -> str:
    return str(page.evaluate(f"app.graph._nodes.find(n => n.type === '{NODE}').id"))


def widget_label_shown(page, view: str, label: str) -> bool:
    if view == "vue":
        return page.locator(f"[data-node-id='{generate_id(page)}']").get_by_text(label, exact=True).count() > 0
    return page.evaluate(f"app.graph._nodes.find(n => n.type === '{NODE}').widgets.find(w => w.name === '{WIDGET}')"
                         ".label") == label


def hover_widget_tooltip(page, view: str) -> str:
    """The tooltip ComfyUI shows when the pointer comes to rest on the widget."""
    page.mouse.move(5, 500)  # from elsewhere: a pointer already there moves no tooltip in
    if view == "vue":
        page.locator(f"[data-node-id='{generate_id(page)}']").get_by_text(
            catalog(current_locale(page))[f"nodeDefs.{NODE}.inputs.{WIDGET}.name"], exact=True).first.hover()
    else:
        # In the middle of the canvas, clear of a side panel an earlier test left open (frontend 1.27's
        # node help opens in the left sidebar), with the widget positions the compact node now has.
        page.evaluate(f"() => {{ const n = app.graph._nodes.find(n => n.type === '{NODE}');"
                      " app.canvas.ds.offset = [700 - n.pos[0], 250 - n.pos[1]]; app.canvas.draw(true, true); }")
        x, y = page.evaluate(f"""() => {{ const n = app.graph._nodes.find(n => n.type === '{NODE}');
            const w = n.widgets.find(w => w.name === '{WIDGET}');
            const [x, y] = app.canvas.ds.convertOffsetToCanvas([n.pos[0] + 60, n.pos[1] + w.y + 10]);
            const r = app.canvas.canvas.getBoundingClientRect(); return [r.left + x, r.top + y]; }}""")
        page.mouse.move(x, y)
        page.mouse.move(x + 2, y + 1)
    tooltip = page.locator(".node-tooltip:visible, [role='tooltip']:visible").first
    tooltip.wait_for(state="visible", timeout=10_000)
    return tooltip.inner_text()


def current_locale(page) -> str:
    return page.evaluate(f"app.extensionManager.setting.get('{LOCALE_SETTING}')")


def help_panel_text(page) -> str:
    """The node's help page as the selection toolbox's info button opens it."""
    page.evaluate(f"() => {{ const n = app.graph._nodes.find(n => n.type === '{NODE}'); app.canvas.deselectAll();"
                  " app.canvas.selectNode(n); app.canvas.setDirty(true, true); }")
    page.locator("[data-testid='info-button']").first.dispatch_event("click")
    heading = page.locator("h1").filter(has_text="FLUX.2 [flex]").first
    heading.wait_for(state="visible", timeout=15_000)
    shown = heading.locator("xpath=..").inner_text()
    if page.locator(".side-bar-panel h1").filter(has_text="FLUX.2 [flex]").count():
        # frontend 1.27 shows it in the left sidebar, over the node, and its info button toggles it:
        # closed again, so that the next test finds the node uncovered and opens the page afresh
        page.locator("[data-testid='info-button']").first.dispatch_event("click")
        heading.wait_for(state="hidden", timeout=15_000)
    return shown


def price_prefix(lang: str) -> str:
    return catalog(lang)["flux2Flex.price.line"].split("{price}")[0]


@pytest.mark.parametrize("lang", ["ja", "zh-TW"])
def test_the_pack_speaks_the_users_language(english_afterwards: BrowserSession, lang: str) -> None:
    page, view = english_afterwards.page, english_afterwards.view
    if not switch_locale(page, lang):
        pytest.skip(f"this frontend ({frontend_version(page)}) shows custom nodes untranslated")
    open_workflow(page, EXAMPLE)
    texts = catalog(lang)
    assert shown_title(page, view) == node_text(lang, "display_name")
    assert widget_label_shown(page, view, node_text(lang, f"inputs.{WIDGET}.name"))
    assert hover_widget_tooltip(page, view).strip() == node_text(lang, f"inputs.{WIDGET}.tooltip")
    page.wait_for_function("(prefix) => document.querySelector('.flux2-flex-price')?.textContent.startsWith(prefix)"
                           " && document.querySelector('.flux2-flex-price').textContent.includes('$0.050')",
                           arg=price_prefix(lang), timeout=30_000)
    page.keyboard.press("Escape")
    help_page = (DOCS / NODE / f"{lang}.md").read_text(encoding="utf-8")
    shown = help_panel_text(page)
    assert help_page.splitlines()[0].removeprefix("# ") in shown
    assert re.search(r"^## (.+)$", help_page, re.M).group(1) in shown, "the page's own sections, not English"
    assert texts["flux2Flex.price.line"] != ENGLISH["flux2Flex.price.line"]


def test_a_workflow_saved_in_japanese_runs_in_english_and_the_other_way_round(
        english_afterwards: BrowserSession) -> None:
    session = english_afterwards
    page = session.page
    if not switch_locale(page, "en"):
        pytest.skip("the frontend never settled on English")
    open_workflow(page, EXAMPLE)
    saved_in_english = page.evaluate("app.graph.serialize()")
    prompt_in_english = queued_prompt(page)
    translated = switch_locale(page, "ja")

    page.evaluate("async (graph) => { await app.loadGraphData(graph); }", saved_in_english)
    if translated:
        assert shown_title(page, session.view) == node_text("ja", "display_name")
    assert queued_prompt(page) == prompt_in_english
    saved_in_japanese = page.evaluate("app.graph.serialize()")
    assert widget_values(saved_in_japanese) == widget_values(saved_in_english), "values are saved untranslated"
    report = run_and_wait(session)
    if translated:  # the server writes the receipt in the language of the tab that queued the run
        assert receipt_label("ja") in report and receipt_label("en") not in report, report

    assert switch_locale(page, "en")
    page.evaluate("async (graph) => { await app.loadGraphData(graph); }", json.loads(json.dumps(saved_in_japanese)))
    assert shown_title(page, session.view) == ENGLISH[f"nodeDefs.{NODE}.display_name"]
    assert widget_label_shown(page, session.view, WIDGET), "English labels, not the ones saved in Japanese"
    assert queued_prompt(page) == prompt_in_english
    page.evaluate(f"() => {{ const w = app.graph._nodes.find(n => n.type === '{NODE}').widgets"
                  ".find(w => w.name === 'seed'); w.value += 1; w.callback?.(w.value); }")  # a new image, not the cache
    assert receipt_label("en") in run_and_wait(session)


def receipt_label(lang: str) -> str:
    """The word before the seed on a receipt's first line ("seed", "シード")."""
    return catalog(lang)["flux2Flex.report.line"].split("{seed}")[0].split("·")[-1].strip()


def queued_prompt(page) -> dict:
    """What Run would queue: each node's type and input values (without the title it shows)."""
    output = page.evaluate("(async () => (await app.graphToPrompt()).output)()")
    return {node_id: (node["class_type"], node["inputs"]) for node_id, node in output.items()}


def widget_values(workflow: dict) -> dict:
    return {node["id"]: node.get("widgets_values") for node in workflow["nodes"]}


def run_and_wait(session: BrowserSession) -> str:
    """Press Run (labelled in the page's language) and wait for the run's report on the node; the report."""
    page = session.page
    submits = len(session.bfl.submits)
    page.locator("[data-testid='queue-button']:visible").click()
    page.wait_for_function("document.querySelector('.flux2-flex-report')?.textContent.startsWith('$')",
                           timeout=120_000)  # the receipt: its cost first, figures as the server wrote them
    assert len(session.bfl.submits) == submits + 1
    generate = next(node for node in json.loads(EXAMPLE.read_text(encoding="utf-8"))["nodes"] if node["type"] == NODE)
    prompt = generate["widgets_values"][1]
    assert session.bfl.submits[-1].json()["prompt"] == prompt, "the prompt is sent as typed, whatever the language"
    return page.locator(".flux2-flex-report").first.inner_text()
