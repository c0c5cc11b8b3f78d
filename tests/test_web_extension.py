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
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from comfyui_runner import NATIVE_RUN_SECONDS, ComfyUI, needs_comfyui, prepare_local_models, prepare_native_models
from fakes.bfl_server import FakeBfl
from workflow_format import (COST_ESTIMATE, LOCAL_COMFYUI, LOCAL_DIFFUSERS, MULTI_REFERENCE, TEXT_TO_IMAGE, load,
                             workflow_files)

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
    open_workflow(page, TEXT_TO_IMAGE)
    try:
        page.locator("[data-node-id]").filter(has_text="Price:").first.wait_for(state="visible",
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


def press_cancel(page) -> None:
    """The button beside Run that cancels the current run (frontend 1.58.1 labels it "Cancel
    current run"); ComfyUI's own interrupt command where a frontend has no such button."""
    button = page.get_by_role("button", name="Cancel current run")
    if button.count():
        button.first.click()
    else:
        page.evaluate("app.extensionManager.command.execute('Comfy.Interrupt')")


def wait_until_idle(comfy: ComfyUI, seconds: float) -> None:
    """Until ComfyUI's queue has nothing running or waiting."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        queue = comfy.client.get("/queue").json()
        if not queue["queue_running"] and not queue["queue_pending"]:
            return
        time.sleep(0.5)
    raise TimeoutError(f"ComfyUI's queue was still busy after {seconds} s")


def priced_node_count(path: Path) -> int:
    return sum(node["type"] in ("FluxFlexGenerate", "FluxFlexEdit", "FluxFlexCostEstimate")
               for node in load(path)["nodes"])


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.stem)
def test_an_example_runs_from_the_run_button_with_its_price_then_its_cost(session: BrowserSession,
                                                                          path: Path) -> None:
    page = session.page
    native = path == LOCAL_COMFYUI
    local = path == LOCAL_DIFFUSERS or native
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
        "e.textContent.length > 0).length === count", arg=count,
        timeout=(NATIVE_RUN_SECONDS if native else RUN_SECONDS) * 1000)
    # With a Local Model (ComfyUI) the node reports when it expands, before ComfyUI samples the
    # expansion: the next example waits for none of it.
    wait_until_idle(session.comfy, NATIVE_RUN_SECONDS if native else RUN_SECONDS)
    for text in SIGN_IN_GATE:
        assert page.get_by_text(text).count() == 0, f"'{text}' appeared after pressing Run"
    sends = 0 if local or path == COST_ESTIMATE else 1
    assert len(session.bfl.submits) - submits == sends, "exactly the requests the workflow makes reach the provider"
    reports = page.locator(".flux2-flex-report").all_inner_texts()
    for price, report in zip(prices, reports):
        assert report.splitlines()[1:] and report.count("reported") <= 1
        assert "Last run" not in report
        if path != COST_ESTIMATE:  # Cost Estimate shows its breakdown, sources included
            assert "source:" not in report, "a receipt, not internals"
        if local:
            assert price.startswith("Price: free (local run) · ") and "free" in report
            if native:  # on ComfyUI's files Edit follows the template: the 768x512 street scaled to about 1 MP
                assert price.endswith(" · 1248x832"), price
        else:
            assert price.startswith("Price: $"), price
            assert dollars(price) in report, "the run costs what the node said before it ran"
    assert session.bfl.api_key not in page.evaluate("JSON.stringify(app.graph.serialize())")


def dollars(price: str) -> str:
    """The figure of a price line: "$0.050" of "Price: $0.050 · 832x1248"."""
    return price.removeprefix("Price: ").split(" · ")[0]


def wait_for_price(page, text: str) -> None:
    """Until the price line reads `text` (a trailing "…" matches any end)."""
    try:
        page.wait_for_function("(text) => { const shown = document.querySelector('.flux2-flex-price').textContent;"
                               " return text.endsWith('…') ? shown.startsWith(text.slice(0, -1)) : shown === text; }",
                               arg=text, timeout=15_000)
    except sync_api.TimeoutError:
        shown = page.evaluate("document.querySelector('.flux2-flex-price').textContent")
        pytest.fail(f"the price line reads {shown!r}, not {text!r}")


def test_the_price_follows_provider_batch_size_and_wired_images(session: BrowserSession) -> None:
    page = session.page
    open_workflow(page, MULTI_REFERENCE)
    [price] = shown_prices(page, 1)
    assert dollars(price) == "$0.200"
    set_widget(page, "FluxFlexEdit", "batch_size", 3)
    wait_for_price(page, price.replace("$0.200", "$0.600"))
    set_widget(page, "FluxFlexEdit", "provider", "replicate")
    wait_for_price(page, price.replace("$0.200", "price unknown: see your Replicate dashboard") + " · no replicate key…")
    set_widget(page, "FluxFlexEdit", "provider", "bfl")
    page.evaluate("(() => { const n = app.graph._nodes.find(n => n.type === 'FluxFlexEdit');"
                  " n.disconnectInput(n.findInputSlot('references')); })()")
    wait_for_price(page, price.replace("$0.200", "$0.300"))
    page.evaluate("(() => { const n = app.graph._nodes.find(n => n.type === 'FluxFlexEdit');"
                  " n.disconnectInput(n.findInputSlot('image')); })()")
    wait_for_price(page, "Price: needs an image")


def test_cost_estimate_follows_its_image_and_match_input_size(session: BrowserSession) -> None:
    page = session.page
    open_workflow(page, COST_ESTIMATE)
    [price] = shown_prices(page, 1)
    assert dollars(price) == "$0.600", "4 edits of the 768x512 image (1 MP out, 1 MP in) + 1 reference"
    assert price.endswith(" · 768x512"), "the size it prices is the input's"
    set_widget(page, "FluxFlexCostEstimate", "match_input_size", False)  # its size widgets say 768x512 too
    page.wait_for_timeout(2 * 400)  # two of the extension's refreshes
    assert shown_prices(page, 1) == [price]
    set_widget(page, "FluxFlexCostEstimate", "aspect_ratio", "16:9")
    set_widget(page, "FluxFlexCostEstimate", "megapixels", "2")
    page.wait_for_function("document.querySelector('.flux2-flex-price').textContent.startsWith('Price: $0.800')")


def set_widget(page, node_type: str, name: str, value: object) -> None:
    page.evaluate(
        "([type, name, value]) => { const node = app.graph._nodes.find(n => n.type === type);"
        " const widget = node.widgets.find(w => w.name === name); widget.value = value;"
        " widget.callback?.(value); }", [node_type, name, value])


def open_pack_settings(page):
    page.evaluate("app.extensionManager.command.execute('Comfy.ShowSettingsDialog')")
    page.get_by_text("FLUX.2 Flex", exact=True).first.click()
    form = page.locator(".flux2-flex-keys")
    form.locator(".flux2-flex-provider option[value='fal']").wait_for(state="attached")
    return form


def close_pack_settings(page) -> None:
    """Escape, then wait until the dialog is gone: frontend 1.27.10 ignores a reopening while it closes."""
    page.keyboard.press("Escape")
    page.wait_for_function("![...document.querySelectorAll('[role=dialog]')].some(e => e.checkVisibility())")


def wait_for_message(page, selector: str, text: str) -> None:
    page.wait_for_function("([selector, text]) => document.querySelector(selector)?.textContent === text",
                           arg=[f"{selector} .flux2-flex-message", text])


def test_the_settings_form_stores_keys_server_side_only_and_says_which(session: BrowserSession) -> None:
    page, comfy = session.page, session.comfy
    secret = f"fal-browser-secret-{session.view}"
    form = open_pack_settings(page)
    form.locator(".flux2-flex-provider").select_option("fal")
    assert form.locator(".flux2-flex-key-state").inner_text() == "No key stored."
    assert form.locator(".flux2-flex-key").get_attribute("type") == "password"
    form.locator(".flux2-flex-key").fill(secret)
    form.locator(".flux2-flex-save").click()
    wait_for_message(page, ".flux2-flex-keys", "fal key 'default' stored")
    assert form.locator(".flux2-flex-key-state").inner_text() == "Stored: 'default'."
    assert form.locator(".flux2-flex-key").input_value() == ""
    key_file = comfy.root / "user" / "flux2_flex" / "keys.json"
    assert json.loads(key_file.read_text())["keys"]["fal"] == {"default": secret}
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    settings_files = list((comfy.root / "user").rglob("comfy.settings.json"))
    assert all(secret not in path.read_text() for path in settings_files)

    # A second account of another provider, under a name the node's key_name picks.
    form.locator(".flux2-flex-provider").select_option("bfl")
    assert "BFL_API_KEY is set on the server" in form.locator(".flux2-flex-key-state").inner_text()
    form.locator(".flux2-flex-key-name").fill("client")
    form.locator(".flux2-flex-key").fill("bfl-client-account-77")
    form.locator(".flux2-flex-save").click()
    wait_for_message(page, ".flux2-flex-keys", "bfl key 'client' stored")
    assert "Stored: 'client'." in form.locator(".flux2-flex-key-state").inner_text()
    assert json.loads(key_file.read_text())["keys"]["bfl"] == {"client": "bfl-client-account-77"}
    assert secret not in page.content() and "bfl-client-account-77" not in page.content()
    close_pack_settings(page)


def test_foundrys_endpoint_is_an_option_beside_the_providers_not_a_key(session: BrowserSession) -> None:
    page, comfy = session.page, session.comfy
    form = open_pack_settings(page)
    providers = form.locator(".flux2-flex-provider option").evaluate_all("options => options.map(o => o.value)")
    assert "azure-foundry" in providers and not any(value.startswith("azure-foundry-") for value in providers)
    endpoint = page.locator(".flux2-flex-options [data-option='azure-foundry-endpoint'] input")
    assert endpoint.get_attribute("type") == "text"
    assert endpoint.get_attribute("placeholder") == "https://<resource>.services.ai.azure.com"
    endpoint.fill("https://studio.services.ai.azure.com")
    page.locator(".flux2-flex-options [data-option='azure-foundry-endpoint'] button").click()
    wait_for_message(page, ".flux2-flex-options", "Microsoft Foundry endpoint stored")
    stored = json.loads((comfy.root / "user" / "flux2_flex" / "keys.json").read_text())["keys"]
    assert stored["azure-foundry-endpoint"] == {"default": "https://studio.services.ai.azure.com"}
    close_pack_settings(page)
    open_pack_settings(page)  # opened again, the form shows what is stored: an endpoint is not a secret
    page.wait_for_function("document.querySelector(\".flux2-flex-options [data-option='azure-foundry-endpoint'] "
                           "input\")?.value === 'https://studio.services.ai.azure.com'")
    close_pack_settings(page)


# --- Issue 19: what a new user meets pressing the real buttons -------------------------------

def add_node(page, node_type: str) -> None:
    """A fresh node, as the node library adds one (its defaults, not a workflow's values)."""
    page.evaluate("(type) => { app.graph.clear(); const node = LiteGraph.createNode(type); node.pos = [200, 100];"
                  " app.graph.add(node); app.canvas.setDirty(true, true); }", node_type)


def visible_widgets(page, node_type: str, view: str) -> list[str]:
    """The widgets a user sees on the node without "show advanced" (the pack's panel and the frontend's
    own `$$` widgets, such as the image preview of an earlier run, not counted),
    as the frontend's own visibility says for this view (1.58.1; older ones show every widget)."""
    surface = "vueNode" if view == "vue" else "canvas"
    return page.evaluate(
        "([type, surface]) => { const n = app.graph._nodes.find(n => n.type === type);"
        " return n.widgets.filter(w => w.name !== 'flux2_flex_price' && !w.name.startsWith('$$') && (w.visibility ? "
        " !w.visibility.suppression.byExtension && w.visibility.surfaces[surface] === 'shown' : !w.hidden))"
        ".map(w => w.name); }", [node_type, surface])


def node_errors(page) -> dict:
    page.wait_for_function("app.lastNodeErrors && Object.keys(app.lastNodeErrors).length > 0", timeout=30_000)
    return page.evaluate("app.lastNodeErrors")


def test_a_fresh_generate_is_compact_and_its_size_is_one_choice(session: BrowserSession) -> None:
    page = session.page
    add_node(page, "FluxFlexGenerate")
    page.wait_for_function("app.graph._nodes[0].flux2Flex?.price.textContent.includes(' · ')")  # its own panel
    page.wait_for_timeout(1000)  # a tick of the extension, which shows the widgets that apply
    shown = visible_widgets(page, "FluxFlexGenerate", session.view)
    # a frontend that folds advanced inputs, with a ComfyUI that marks them (0.3.64 marks none: all shown)
    if page.evaluate("(n => 'visibility' in n.widgets[0] && n.widgets.some(w => w.options?.advanced))"
                     "(app.graph._nodes[0])"):
        assert len(shown) <= 9, ", ".join(shown)
    assert {"width", "height"} <= set(shown) and "megapixels" not in shown, "custom size: width and height"
    set_widget(page, "FluxFlexGenerate", "aspect_ratio", "2:3")
    wait_for_price(page, "Price: $0.050 · 832x1248 · needs a prompt")
    shown = visible_widgets(page, "FluxFlexGenerate", session.view)
    assert "megapixels" in shown and "width" not in shown and "height" not in shown, shown
    page.screenshot(path=str(session.comfy.root / f"fresh-generate-{session.view}.png"))


def test_the_classic_node_keeps_no_band_for_folded_inputs_and_unfolds_them(session: BrowserSession) -> None:
    """Frontend 1.58.1's classic canvas lays out a row for each folded advanced input; the pack's
    panel must follow the last widget shown, and the node's menu toggle must bring them back."""
    if session.view != "classic":
        pytest.skip("the Vue node view folds advanced inputs itself")
    page = session.page
    open_workflow(page, TEXT_TO_IMAGE)
    if not page.evaluate("(() => { const n = app.graph._nodes.find(n => n.type === 'FluxFlexGenerate');"
                         " return n.widgets.some(w => w.options?.advanced) && 'isWidgetRowVisible' in n; })()"):
        pytest.skip(f"this frontend ({frontend_version(page)}) has no advanced inputs: every widget is shown")
    layout = """() => { app.canvas.draw(true, true);
        const n = app.graph._nodes.find(n => n.type === 'FluxFlexGenerate');
        const shown = n.widgets.filter(w => w.name !== 'flux2_flex_price' && n.isWidgetRowVisible(w));
        const last = shown.reduce((a, w) => Math.max(a, w.y + (w.computedHeight ?? 24)), 0);
        return {gap: n.widgets.find(w => w.name === 'flux2_flex_price').y - last, shown: shown.length,
                height: n.size[1], fits: n.computeSize()[1]}; }"""
    page.wait_for_timeout(1500)  # a tick of the extension
    folded = page.evaluate(layout)
    assert folded["gap"] <= 8 and folded["height"] == folded["fits"], folded
    page.evaluate("app.graph._nodes.find(n => n.type === 'FluxFlexGenerate').toggleAdvanced()")
    page.wait_for_timeout(1500)
    unfolded = page.evaluate(layout)
    assert unfolded["shown"] == folded["shown"] + 7 and unfolded["gap"] <= 8, unfolded
    page.screenshot(path=str(session.comfy.root / "advanced-shown-classic.png"))
    page.evaluate("app.graph._nodes.find(n => n.type === 'FluxFlexGenerate').toggleAdvanced()")


def test_run_without_a_key_says_where_to_store_one_at_the_provider(session: BrowserSession) -> None:
    page = session.page
    open_workflow(page, TEXT_TO_IMAGE)
    set_widget(page, "FluxFlexGenerate", "provider", "cometapi")
    page.wait_for_function("document.querySelector('.flux2-flex-price').textContent"
                           ".endsWith(' · no cometapi key: Settings > FLUX.2 Flex')")
    submits = len(session.bfl.submits)
    press_run(page)
    errors = node_errors(page)
    [(node_id, entry)] = errors.items()
    [error] = entry["errors"]
    assert error["extra_info"]["input_name"] == "provider" and "No API key for cometapi" in error["details"]
    assert len(session.bfl.submits) == submits
    page.screenshot(path=str(session.comfy.root / f"no-key-{session.view}.png"))
    page.keyboard.press("Escape")


def test_a_bad_size_is_one_error_at_width(session: BrowserSession) -> None:
    page = session.page
    open_workflow(page, TEXT_TO_IMAGE)
    set_widget(page, "FluxFlexGenerate", "aspect_ratio", "custom")
    set_widget(page, "FluxFlexGenerate", "width", 2048)
    set_widget(page, "FluxFlexGenerate", "height", 2064)
    page.wait_for_function("document.querySelector('.flux2-flex-price').textContent.includes('2048x2064 = 4.03 MP')")
    press_run(page)
    [entry] = node_errors(page).values()
    [error] = entry["errors"]
    assert error["extra_info"]["input_name"] == "width" and "at most 4,194,304 px" in error["details"], error
    page.screenshot(path=str(session.comfy.root / f"bad-size-{session.view}.png"))
    page.keyboard.press("Escape")


def test_cancel_mid_run_names_the_paid_task_then_recover_brings_it(session: BrowserSession) -> None:
    from fakes.bfl_server import TaskPlan

    page, bfl = session.page, session.bfl
    open_workflow(page, TEXT_TO_IMAGE)
    set_widget(page, "FluxFlexGenerate", "seed", 31337 + (session.view == "vue"))
    bfl.plans.append(TaskPlan(latency=30.0))
    before = set(bfl.tasks)
    press_run(page)
    page.wait_for_function("document.querySelector('.flux2-flex-status') && "
                           "[...document.querySelectorAll('.flux2-flex-report')].every(e => !e.textContent)",
                           timeout=30_000)
    for _ in range(300):
        if set(bfl.tasks) - before:
            break
        page.wait_for_timeout(200)
    [task_id] = set(bfl.tasks) - before
    page.wait_for_timeout(1500)  # the node has said the task is paid
    press_cancel(page)
    page.wait_for_function("(id) => document.querySelector('.flux2-flex-status').textContent.includes(id)",
                           arg=task_id, timeout=30_000)
    said = page.locator(".flux2-flex-status").inner_text()
    assert said.startswith("Cancelled after") and "was paid" in said and "Recover paid task" in said, said
    page.screenshot(path=str(session.comfy.root / f"cancelled-{session.view}.png"))

    add_node(page, "FluxFlexRecoverTask")
    page.wait_for_function(
        "(id) => { const n = app.graph._nodes.find(n => n.type === 'FluxFlexRecoverTask');"
        " const w = n.widgets.find(w => w.name === 'task_id');"
        " const values = typeof w.options.values === 'function' ? w.options.values() : w.options.values;"
        " return (values ?? []).includes(id); }", arg=task_id, timeout=30_000)
    set_widget(page, "FluxFlexRecoverTask", "task_id", task_id)
    submits = len(bfl.submits)
    press_run(page)
    page.wait_for_function("(id) => document.querySelector('.flux2-flex-report')?.textContent.includes(id)",
                           arg=task_id, timeout=RUN_SECONDS * 1000)
    assert page.evaluate("app.graph._nodes.find(n => n.type === 'FluxFlexRecoverTask').imgs?.length ?? "
                         "app.nodeOutputs?.[String(app.graph._nodes.find(n => n.type === "
                         "'FluxFlexRecoverTask').id)]?.images?.length") or \
        page.locator("[data-node-id] img").count() > 0, "the recovered image is previewed on the node"
    assert len(bfl.submits) == submits, "nothing was paid again"
    page.screenshot(path=str(session.comfy.root / f"recovered-{session.view}.png"))


def test_a_long_report_fits_on_the_node(session: BrowserSession) -> None:
    page = session.page
    open_workflow(page, TEXT_TO_IMAGE)
    set_widget(page, "FluxFlexGenerate", "batch_size", 4)
    set_widget(page, "FluxFlexGenerate", "seed", 777 + (session.view == "vue"))
    press_run(page)
    page.wait_for_function("document.querySelector('.flux2-flex-report')?.textContent.includes('4 images')",
                           timeout=RUN_SECONDS * 1000)
    page.wait_for_timeout(500)
    panel = page.locator(".flux2-flex-panel").first
    report = page.locator(".flux2-flex-report").first
    assert report.inner_text().count("seed") == 4
    fits = page.evaluate("(() => { const p = document.querySelector('.flux2-flex-panel');"
                         " const r = p.getBoundingClientRect(); const last = p.lastElementChild.getBoundingClientRect();"
                         " return last.bottom <= r.bottom + 2 && p.scrollHeight <= p.clientHeight + 2; })()")
    assert fits, "the whole report is on the node, nothing cut off"
    assert panel.is_visible()
    page.screenshot(path=str(session.comfy.root / f"long-report-{session.view}.png"))
    press_run(page)  # nothing changed: ComfyUI answers from its own cache
    page.wait_for_function("document.querySelector('.flux2-flex-report').textContent"
                           ".startsWith(\"Answered from ComfyUI's cache\")", timeout=RUN_SECONDS * 1000)
    assert "4 images" in report.inner_text(), "the earlier run's receipt, said to be the earlier run's"


EARLIER_EXAMPLE = "workflows/flux2_flex_text_to_image_typography.json"  # the name earlier versions gave it


def earlier_versions(relative: str) -> list[tuple[str, dict]]:
    """The example as every commit that changed it saved it (git history), oldest first."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    commits = subprocess.run(["git", "log", "--all", "--format=%h", "--", relative], cwd=root,
                             capture_output=True, text=True, check=True).stdout.split()
    shown = (subprocess.run(["git", "show", f"{commit}:{relative}"], cwd=root, capture_output=True, text=True)
             for commit in reversed(commits))
    return [(commit, json.loads(result.stdout)) for commit, result in zip(reversed(commits), shown)
            if result.returncode == 0]  # a commit that removed or renamed it has none


def test_workflows_saved_by_earlier_versions_load_with_their_values(session: BrowserSession) -> None:
    versions = earlier_versions(EARLIER_EXAMPLE)
    assert len(versions) >= 3, "the example has a history to load"
    for commit, workflow in versions:
        [saved] = [node for node in workflow["nodes"] if node["type"] == "FluxFlexGenerate"]
        session.page.evaluate("async (graph) => { await app.loadGraphData(graph); }", workflow)
        loaded = session.page.evaluate(
            "(() => { const n = app.graph._nodes.find(n => n.type === 'FluxFlexGenerate');"
            " return n.widgets.filter(w => w.name !== 'flux2_flex_price').map(w => w.value); })()")
        values = saved["widgets_values"]
        if len(values) == len(loaded) + 2:  # the one release whose Generate had a Local Model's widgets
            assert loaded[:15] == values[:15] and loaded[15:] == ["", "png"], commit
        else:
            assert loaded[:len(values)] == values, commit
        wait_for_price(session.page, "Price: $0.050 · 832x1248")


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
    close_pack_settings(page)
    keys = open_pack_settings(page)  # its key is stored like any provider's, in the same form
    keys.locator(".flux2-flex-provider").select_option("my-relay")
    keys.locator(".flux2-flex-key").fill("relay-key-5150")
    keys.locator(".flux2-flex-save").click()
    wait_for_message(page, ".flux2-flex-keys", "my-relay key 'default' stored")
    stored_keys = json.loads((comfy.root / "user" / "flux2_flex" / "keys.json").read_text())["keys"]
    assert stored_keys["my-relay"] == {"default": "relay-key-5150"} and "relay-key-5150" not in page.content()
    close_pack_settings(page)
