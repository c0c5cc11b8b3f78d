"""The web extension in a real headless Chromium against real ComfyUI: the key form and the cost label.

Skipped unless ComfyUI (see comfyui_runner), Debian's Chromium and the playwright package are
present. Playwright drives the system Chromium; it downloads no browser of its own.
"""

from __future__ import annotations

import json
import shutil
import stat
from collections.abc import Iterator

import pytest

from comfyui_runner import ComfyUI, needs_comfyui
from fakes.bfl_server import FakeBfl
from workflow_format import load, workflow_files

CHROMIUM = shutil.which("chromium")
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright to test the page")
pytestmark = [needs_comfyui, pytest.mark.skipif(not CHROMIUM, reason="apt-get install chromium to test the page")]
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                  "--disable-background-networking", "--disable-component-update"]
EXTENSION = "FLUX2Flex.Nodes"


@pytest.fixture(scope="module")
def page(comfy: ComfyUI) -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        tab = browser.new_page(viewport={"width": 1600, "height": 1000})
        tab.goto(comfy.url)
        tab.wait_for_function(f"window.app?.graph && app.extensions?.some(e => e.name === '{EXTENSION}')",
                              timeout=90_000)
        dismiss_first_run_templates(tab)
        yield tab
        browser.close()


def dismiss_first_run_templates(tab) -> None:
    """A new ComfyUI user is greeted by the template browser, which covers the page."""
    greeting = tab.get_by_text("Get Started with a Template")
    try:
        greeting.wait_for(timeout=15_000)
    except sync_api.TimeoutError:
        return
    tab.keyboard.press("Escape")
    greeting.wait_for(state="detached")


def open_the_packs_settings(page) -> None:
    """The settings dialog at the pack's category: a listbox option in older frontends, a plain
    entry in the dialog's navigation in newer ones."""
    page.evaluate("app.extensionManager.command.execute('Comfy.ShowSettingsDialog')")
    listbox_option = page.get_by_role("option", name="FLUX.2 Flex")
    listbox_option.or_(page.get_by_role("dialog").get_by_text("FLUX.2 Flex", exact=True)).first.click()


def test_the_settings_form_stores_keys_server_side_only_also_under_names(page, comfy: ComfyUI) -> None:
    secret = "fal-browser-secret-42"
    open_the_packs_settings(page)
    form = page.locator(".flux2-flex-keys")
    form.locator("select option[value='fal']").wait_for(state="attached")
    form.locator("select").select_option("fal")
    assert "no key" in form.locator(".flux2-flex-key-state").inner_text()
    form.locator("input[type=password]").fill(secret)
    form.locator("button").click()
    page.wait_for_function("document.querySelector('.flux2-flex-keys .flux2-flex-key-state').textContent === 'key stored'")
    assert form.locator("input[type=password]").input_value() == ""
    key_file = comfy.root / "user" / "flux2_flex" / "keys.json"
    assert json.loads(key_file.read_text())["keys"]["fal"] == {"default": secret}
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    settings_files = list((comfy.root / "user").rglob("comfy.settings.json"))
    assert all(secret not in path.read_text() for path in settings_files)

    # A second account of another provider, under a name the node's key_name picks.
    form.locator("select").select_option("bfl")
    form.locator(".flux2-flex-key-name").fill("client")
    form.locator("input[type=password]").fill("bfl-client-account-77")
    form.locator("button").click()
    page.wait_for_function("document.querySelector('.flux2-flex-keys .flux2-flex-key-state')"
                           ".textContent.includes('named keys: client')")
    assert json.loads(key_file.read_text())["keys"]["bfl"] == {"client": "bfl-client-account-77"}
    page.keyboard.press("Escape")


def test_a_run_shows_its_cost_on_the_node_and_the_saved_graph_has_no_key(page, comfy_bfl: FakeBfl) -> None:
    workflow = next(path for path in workflow_files() if "typography" in path.stem)
    page.evaluate("async (graph) => { await app.loadGraphData(graph); await app.queuePrompt(0, 1); }", load(workflow))
    page.wait_for_function("app.graph._nodes.some(n => n.type === 'FluxFlexGenerate' && n.flux2FlexCost)",
                           timeout=60_000)
    label = page.evaluate("app.graph._nodes.find(n => n.type === 'FluxFlexGenerate').flux2FlexCost")
    assert "$0.050" in label and "provider reported 5 credits" in label
    saved = page.evaluate("JSON.stringify(app.graph.serialize())")
    assert comfy_bfl.api_key not in saved
