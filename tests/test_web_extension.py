"""The pack in a real browser, used as a user uses it: open an example, read the price, press Run.

Runs headless Chromium against a real ComfyUI (see comfyui_runner: COMFYUI_PATH, COMFYUI_PYTHON
and optionally COMFYUI_FRONTEND_ROOT for a newer frontend), once in the classic canvas and once
in the Vue node view where the frontend has it. Skipped unless ComfyUI, Debian's Chromium and the
playwright package are present. Playwright drives the system Chromium; it downloads no browser.
"""

from __future__ import annotations

import json
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from comfyui_runner import NATIVE_RUN_SECONDS, ComfyUI, needs_comfyui, prepare_local_models, prepare_native_models
from fakes.bfl_server import FakeBfl
from workflow_format import load, workflow_files

CHROMIUM = shutil.which("chromium")
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright to test the page")
pytestmark = [needs_comfyui, pytest.mark.skipif(not CHROMIUM, reason="apt-get install chromium to test the page")]
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                  "--disable-background-networking", "--disable-component-update"]
EXTENSION = "FLUX2Flex.Nodes"
VUE_NODES_SETTING = "Comfy.VueNodes.Enabled"
SIGN_IN_GATE = ("Sign in to run", "Partner nodes require an account")
RUN_SECONDS = 120
RUN_BUTTON = "[data-testid='queue-button']"  # the Run button in frontends 1.27 to 1.58


@dataclass
class BrowserSession:
    page: object
    comfy: ComfyUI
    bfl: FakeBfl
    view: str
    local_ready: bool  # ComfyUI's Python has diffusers and a tiny FLUX.2 klein is in models/diffusers
    native_ready: bool  # ComfyUI has native FLUX.2 and a tiny klein is under its standard file names


@pytest.fixture(scope="module", params=["classic", "vue"])
def session(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserSession]:
    """A fresh ComfyUI and browser per node view, so ComfyUI's output cache never spans the two."""
    view = request.param
    with FakeBfl() as bfl:
        root = tmp_path_factory.mktemp(f"comfyui-{view}")
        local_ready, native_ready = prepare_local_models(root), prepare_native_models(root)
        comfy = ComfyUI(root, bfl)
        try:
            comfy.wait_until_up()
            with sync_api.sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                open_comfyui(page, comfy)
                if view == "vue":
                    choose_vue_nodes(page)
                yield BrowserSession(page, comfy, bfl, view, local_ready, native_ready)
                browser.close()
        finally:
            comfy.stop()


def open_comfyui(page, comfy: ComfyUI) -> None:
    """Open ComfyUI as a returning user: a first visit opens the template browser over the page."""
    assert comfy.client.post("/settings/Comfy.TutorialCompleted", json=True).status_code == 200
    page.goto(comfy.url)
    page.wait_for_function(f"window.app?.graph && app.extensions?.some(e => e.name === '{EXTENSION}')",
                           timeout=90_000)


def choose_vue_nodes(page) -> None:
    """Switch the Vue node view on through the frontend's own setting, or skip where it has none.

    Frontend 1.27.10 (ComfyUI 0.3.64) has the setting as an unfinished experiment that keeps
    showing the graph it started with when a workflow is opened, so the view counts as present
    only once a node of the opened workflow is shown.
    """
    known = page.evaluate(f"app.extensionManager?.setting?.get?.('{VUE_NODES_SETTING}') !== undefined")
    if not known:
        pytest.skip(f"this frontend ({frontend_version(page)}) has no Vue node view")
    page.evaluate(f"app.extensionManager.setting.set('{VUE_NODES_SETTING}', true)")
    open_workflow(page, workflow_files()[0])
    try:
        page.locator("[data-node-id]").filter(has_text="FLUX.2 [flex]").first.wait_for(state="visible",
                                                                                    timeout=15_000)
    except sync_api.TimeoutError:
        pytest.skip(f"this frontend's ({frontend_version(page)}) Vue node view shows no nodes")


def frontend_version(page) -> str:
    return str(page.evaluate("window.__COMFYUI_FRONTEND_VERSION__ ?? 'unknown'"))


def open_workflow(page, path: Path) -> None:
    page.evaluate("async (graph) => { await app.loadGraphData(graph); }", load(path))


def shown_prices(page, count: int) -> list[str]:
    """The price line of every priced node, once each has its answer from the server."""
    prices = page.locator(".flux2-flex-price")
    page.wait_for_function(
        "(count) => { const all = [...document.querySelectorAll('.flux2-flex-price')];"
        " return all.length === count && all.every(e => e.textContent.startsWith('Price: ') && "
        "!e.textContent.includes('…')) }", arg=count, timeout=30_000)
    for index in range(count):
        assert prices.nth(index).is_visible(), "the price is on screen, not only in the DOM"
    return prices.all_inner_texts()


def press_run(page) -> None:
    """The Run button a user clicks, not app.queuePrompt: a sign-in gate would replace it."""
    for text in SIGN_IN_GATE:
        assert page.get_by_text(text).count() == 0, f"'{text}' is shown before Run"
    button = page.locator(f"{RUN_BUTTON}:visible")
    assert button.inner_text().strip() == "Run"
    button.click()


def priced_node_count(path: Path) -> int:
    return sum(node["type"] in ("FluxFlexGenerate", "FluxFlexEdit", "FluxFlexCostEstimate")
               for node in load(path)["nodes"])


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.stem)
def test_an_example_runs_from_the_run_button_with_its_price_then_its_cost(session: BrowserSession,
                                                                          path: Path) -> None:
    page = session.page
    native = "comfyui_klein" in path.stem
    local = "local_model" in path.stem or native
    if local and not (session.native_ready if native else session.local_ready):
        pytest.skip("this ComfyUI has no native FLUX.2" if native else
                    "ComfyUI's Python has no diffusers: the local example cannot run")
    open_workflow(page, path)
    count = priced_node_count(path)
    prices = shown_prices(page, count)
    submits = len(session.bfl.submits)
    press_run(page)
    page.wait_for_function(
        "(count) => [...document.querySelectorAll('.flux2-flex-report')].filter(e => "
        "e.textContent.startsWith('Last run')).length === count", arg=count,
        timeout=(NATIVE_RUN_SECONDS if native else RUN_SECONDS) * 1000)
    for text in SIGN_IN_GATE:
        assert page.get_by_text(text).count() == 0, f"'{text}' appeared after pressing Run"
    sends = 0 if local or "cost_preview" in path.stem else 1
    assert len(session.bfl.submits) - submits == sends, "exactly the requests the workflow makes reach the provider"
    reports = page.locator(".flux2-flex-report").all_inner_texts()
    for price, report in zip(prices, reports):
        assert report.splitlines()[1:] and report.count("reported") <= 1
        if local:
            assert price == "Price: free (local run)" and "free" in report
        else:
            assert price.startswith("Price: $"), price
            assert price.removeprefix("Price: ") in report, "the run costs what the node said before it ran"
    assert session.bfl.api_key not in page.evaluate("JSON.stringify(app.graph.serialize())")


def test_the_price_follows_provider_batch_size_and_wired_images(session: BrowserSession) -> None:
    page = session.page
    open_workflow(page, next(p for p in workflow_files() if "multi_reference" in p.stem))
    assert shown_prices(page, 1) == ["Price: $0.200"]
    set_widget(page, "FluxFlexEdit", "batch_size", 3)
    page.wait_for_function("document.querySelector('.flux2-flex-price').textContent === 'Price: $0.600'")
    set_widget(page, "FluxFlexEdit", "provider", "replicate")
    page.wait_for_function("document.querySelector('.flux2-flex-price').textContent === 'Price: price unknown'")
    set_widget(page, "FluxFlexEdit", "provider", "bfl")
    page.evaluate("(() => { const n = app.graph._nodes.find(n => n.type === 'FluxFlexEdit');"
                  " n.disconnectInput(n.findInputSlot('references')); })()")
    page.wait_for_function("document.querySelector('.flux2-flex-price').textContent === 'Price: $0.300'")


def test_cost_estimate_follows_its_image_and_match_input_size(session: BrowserSession) -> None:
    page = session.page
    open_workflow(page, next(p for p in workflow_files() if "cost_preview" in p.stem))
    assert shown_prices(page, 1) == ["Price: $0.600"], "4 edits of the 768x512 image (1 MP out, 1 MP in) + 1 reference"
    set_widget(page, "FluxFlexCostEstimate", "match_input_size", False)
    page.wait_for_function("document.querySelector('.flux2-flex-price').textContent === 'Price: $0.800'")


def set_widget(page, node_type: str, name: str, value: object) -> None:
    page.evaluate(
        "([type, name, value]) => { const node = app.graph._nodes.find(n => n.type === type);"
        " const widget = node.widgets.find(w => w.name === name); widget.value = value;"
        " widget.callback?.(value); }", [node_type, name, value])


def test_the_settings_form_stores_keys_server_side_only_also_under_names(session: BrowserSession) -> None:
    if session.view != "classic":
        pytest.skip("the settings dialog is the same in both node views")
    page, comfy = session.page, session.comfy
    secret = "fal-browser-secret-42"
    page.evaluate("app.extensionManager.command.execute('Comfy.ShowSettingsDialog')")
    page.get_by_text("FLUX.2 Flex", exact=True).first.click()
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


def test_the_gateway_form_stores_a_checked_profile_beside_the_keys(session: BrowserSession, tmp_path: Path) -> None:
    if session.view != "classic":
        pytest.skip("the settings dialog is the same in both node views")
    page, comfy = session.page, session.comfy
    profile = {"family": "bfl", "label": "My relay", "origin": "https://relay.example.com", "prefix": "/flux/v1",
               "model": "flux-2-flex", "answer_form": "poll"}
    form = page.locator(".flux2-flex-gateways")
    form.wait_for(state="detached")  # a settings dialog closed just before has gone (frontend 1.27 animates it)
    page.evaluate("app.extensionManager.command.execute('Comfy.ShowSettingsDialog')")
    page.get_by_text("FLUX.2 Flex", exact=True).first.click()
    form.scroll_into_view_if_needed()
    assert '"family": "openai-images"' in form.locator("textarea").input_value(), "a template to start from"
    form.locator("input").fill("my-relay")
    form.locator("textarea").fill(json.dumps({**profile, "origin": "ftp://relay.example.com"}))
    form.get_by_role("button", name="Save").click()
    state = form.locator(".flux2-flex-gateway-state")
    page.wait_for_function("document.querySelector('.flux2-flex-gateway-state').textContent.startsWith('not saved')")
    assert "gateway my-relay: origin" in state.inner_text()
    form.locator("textarea").fill(json.dumps(profile))
    form.get_by_role("button", name="Save").click()
    page.wait_for_function("document.querySelector('.flux2-flex-gateway-state').textContent.startsWith('saved')")
    page.screenshot(path=str(tmp_path / "gateway-form.png"))
    stored = json.loads((comfy.root / "user" / "flux2_flex" / "gateways.json").read_text())
    assert stored["gateways"]["my-relay"]["prefix"] == "/flux/v1"
    assert form.locator("select").input_value() == "my-relay"
    spec = comfy.client.get("/object_info/FluxFlexGenerate").json()["FluxFlexGenerate"]["input"]["required"]["provider"]
    assert "my-relay" in (spec[1]["options"] if spec[0] == "COMBO" else spec[0]), "offered on the node"
    page.keyboard.press("Escape")
