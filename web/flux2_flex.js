// FLUX.2 [flex] nodes: on each node its price before a run and what the run cost after it.
// (The settings entry for provider keys is flux2_flex_settings.js.)
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { currentLocale, t, tellServerLanguage, translationsLoaded } from "./flux2_flex_i18n.js";

const UI_KEY = "flux2_flex";

// --- The price before a run and the cost after it, on the node itself -------------------------
//
// Shown in a DOM widget rather than drawn on the canvas: the Vue node view renders nodes as DOM
// elements and never calls onDrawForeground, while a DOM widget appears in both views and on old
// frontends. The widget is not serialized, so it never enters a workflow or the queued prompt.
// The figures come from the server (the engine's pricing), asked whenever what they depend on
// changes; the browser only says which widgets are set and which images are wired.
//
// The panel's words are the pack's (flux2_flex_i18n.js: the price line's labels, the cached-run
// note) or the server's (the run's report and status text, written in this tab's language; an
// error's message), which stay as sent.
const PRICE_ROUTE = "/flux2_flex/price";
const PRICED_NODES = new Set(["FluxFlexGenerate", "FluxFlexEdit", "FluxFlexCostEstimate"]);
const REPORTING_NODES = new Set([...PRICED_NODES, "FluxFlexRecoverTask"]);
const PANEL_WIDGET = "flux2_flex_price";
const REFERENCE_BATCH = "FluxFlexReferenceBatch";
const LOCAL_MODEL_NODES = new Set(["FluxFlexLocalModel", "FluxFlexNativeModel"]);  // diffusers, ComfyUI files
const LOAD_IMAGE = "LoadImage";
const REFRESH_MS = 400;
const LINE_PX = 16;
// The size widgets that apply: megapixels with an aspect preset, width and height with custom,
// none of them while Edit (or Cost Estimate) takes the input image's size.
const CUSTOM_SIZE = "custom";
const REMOTE_ONLY = ["provider", "safety_tolerance", "output_format", "prompt_upsampling", "use_cache", "key_name",
  "upload_format"];  // what a Local Model makes irrelevant

function widgetValues(node) {
  const values = {};
  for (const widget of node.widgets ?? []) {
    if (widget.name === PANEL_WIDGET || widget.options?.serialize === false) continue;
    if (widget.name === "control_after_generate") continue;
    values[widget.name] = widget.value;
  }
  return values;
}

function inputNode(node, name) {
  const slot = node.findInputSlot?.(name) ?? -1;
  return slot >= 0 ? node.getInputNode(slot) ?? null : null;
}

// What is known about the images on one socket: files picked in LoadImage nodes (the server reads
// their size) and how many other sources there are (their size is known only when the graph runs).
function socketImages(node, name, into = { files: [], unknown: 0 }) {
  const source = inputNode(node, name);
  if (!source) return into;
  if (source.type === LOAD_IMAGE) {
    const file = source.widgets?.find((w) => w.name === "image")?.value;
    if (file) into.files.push(String(file));
    else into.unknown += 1;
  } else if (source.type === REFERENCE_BATCH) {
    for (const input of source.inputs ?? []) socketImages(source, input.name, into);
  } else {
    into.unknown += 1;
  }
  return into;
}

function runsLocally(node) {
  return LOCAL_MODEL_NODES.has(inputNode(node, "local_model")?.type);
}

function priceQuestion(node) {
  const connected = (name) => inputNode(node, name) != null;
  return {
    node: node.type,
    widgets: widgetValues(node),
    image: connected("image") ? socketImages(node, "image") : null,
    references: connected("references") ? socketImages(node, "references") : null,
    local: runsLocally(node),
    local_node: inputNode(node, "local_model")?.type ?? null,  // which local path: its Edit sizes differ
  };
}

// Show only the widgets that apply; the values of hidden ones stay as they were (and saved).
function showApplicableWidgets(node) {
  const value = (name) => node.widgets?.find((w) => w.name === name)?.value;
  const matchInput = node.findInputSlot?.("image") >= 0 && value("match_input_size") === true
    && inputNode(node, "image") != null;
  const custom = value("aspect_ratio") === CUSTOM_SIZE;
  const local = runsLocally(node);
  const hide = {
    aspect_ratio: matchInput,
    megapixels: matchInput || custom,
    width: matchInput || !custom,
    height: matchInput || !custom,
  };
  for (const name of REMOTE_ONLY) hide[name] = local;
  let changed = false;
  for (const widget of node.widgets ?? []) {
    const hidden = Boolean(hide[widget.name]) || foldedInClassicCanvas(node, widget);
    if (!(widget.name in hide) && !widget.options?.advanced || Boolean(widget.hidden) === hidden) continue;
    widget.hidden = hidden;
    changed = true;
  }
  if (changed) fitNode(node);
}

function fitNode(node) {
  const wanted = node.computeSize?.();
  if (wanted) node.setSize([Math.max(node.size[0], wanted[0]), wanted[1]]);
  node.setDirtyCanvas?.(true, true);
}

// The inputs the schema marks advanced: frontend 1.58.1 folds them in the Vue node view by itself;
// marked advanced in the classic canvas too, they are offered by its node menu's "Show advanced
// inputs", but that canvas still lays out an empty row for each folded one (a band above the
// panel), so there they are also hidden until the node shows advanced inputs. Frontends without
// the idiom (no `advanced` on a widget) keep every widget in view, as before.
function foldAdvanced(node) {
  for (const widget of node.widgets ?? []) {
    if (widget.options?.advanced && "advanced" in widget) widget.advanced = true;
  }
}

function foldedInClassicCanvas(node, widget) {
  if (!widget.options?.advanced || !("advanced" in widget)) return false;
  const vueNodes = app.extensionManager?.setting?.get?.("Comfy.VueNodes.Enabled");
  return !vueNodes && !node.showAdvanced;
}

function panelHeight(state) {
  // Lines as the panel wraps them; the classic canvas sizes a DOM widget by what it asks for.
  const parts = [state.price, state.status, state.report];
  const measured = parts.reduce((sum, part) => sum + part.offsetHeight, 0);
  if (measured > 0 && state.panel.offsetParent) return measured + 24;  // padding, and the margin the canvas keeps
  const lines = `${state.price.textContent}\n${state.status.textContent}\n${state.report.textContent}`.split("\n");
  const width = Math.max(120, (state.node.size?.[0] ?? 300) - 20);
  const perLine = Math.max(20, Math.floor(width / 6.5));
  return 8 + LINE_PX * lines.reduce((sum, line) => sum + Math.max(1, Math.ceil(line.length / perLine)), 0);
}

function addPanel(node) {
  const panel = document.createElement("div");
  panel.className = "flux2-flex-panel";
  panel.style.cssText = "font:12px sans-serif;line-height:1.35;padding:2px 4px;white-space:pre-wrap;"
    + "overflow-wrap:anywhere;color:var(--input-text,#ddd);";
  const price = document.createElement("div");
  price.className = "flux2-flex-price";
  price.style.cssText = "color:#f5b642;font-weight:600";
  const status = document.createElement("div");
  status.className = "flux2-flex-status";
  status.style.cssText = "color:#ff8a8a";
  const report = document.createElement("div");
  report.className = "flux2-flex-report";
  report.style.cssText = "opacity:0.9";
  panel.append(price, status, report);
  const state = { node, panel, price, status, report, asked: null, lastStatus: "" };
  const widget = node.addDOMWidget(PANEL_WIDGET, "flux2flex_price", panel, {
    serialize: false,
    hideOnZoom: false,
    getValue: () => undefined,
    setValue: () => {},
    getMinHeight: () => panelHeight(state),
    getMaxHeight: () => panelHeight(state),
  });
  widget.serialize = false;
  state.widget = widget;
  node.flux2Flex = state;
  showPrice(state);
}

// The price line in the user's language: the server's figures ($0.050, ~$0.100-$0.450, sizes)
// and its fixed words, looked up by key; the server's English text where it sent no parts.
function priceLine(state) {
  if (state.error) return t("price.unavailable", { error: state.error });
  if (!state.answer) return PRICED_NODES.has(state.node.type) ? t("price.pending") : "";
  const parts = state.answer.parts?.map(([key, values]) => t(`price.${key}`, values)).join(" · ");
  return t("price.line", { price: parts || state.answer.text });
}

function showPrice(state) {
  state.locale = currentLocale();
  state.price.textContent = priceLine(state);
  state.price.title = state.answer?.detail ?? "";
  state.price.style.color = state.answer?.problem ? "#ff6b6b" : "#f5b642";
}

// The node's own words after a run, a failure or a Cancel; the classic canvas node grows to fit.
function say(node, { status = "", report = "" }) {
  const state = node.flux2Flex;
  if (!state) return;
  state.status.textContent = status;
  state.report.textContent = report;
  requestAnimationFrame(() => fitNode(node));
}

async function refreshPrice(node) {
  const state = node.flux2Flex;
  if (state.locale !== currentLocale()) showPrice(state);
  const question = JSON.stringify(priceQuestion(node));
  if (question === state.asked) return;
  state.asked = question;
  try {
    await translationsLoaded;
    const response = await api.fetchApi(PRICE_ROUTE, { method: "POST", body: question,
      headers: { "Content-Type": "application/json" } });
    const answer = await response.json();
    if (state.asked !== question) return; // the node changed again meanwhile
    if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
    Object.assign(state, { answer, error: null });
  } catch (error) {
    state.asked = null; // ask again on the next tick
    state.error = error.message;
  }
  showPrice(state);
}

function refreshAllNodes() {
  tellServerLanguage();
  for (const node of app.graph?._nodes ?? []) {
    if (!node.flux2Flex) continue;
    if (PRICED_NODES.has(node.type)) {
      showApplicableWidgets(node);
      refreshPrice(node);
    }
  }
}

function packNode(nodeId) {
  if (nodeId == null) return null;
  const node = app.graph?.getNodeById?.(String(nodeId).split(":").pop());
  return node?.flux2Flex ? node : null;
}

// Run events: a run starts (its node forgets the previous report), the node's status text (kept
// to say after a Cancel), a failure, a Cancel, and a node ComfyUI answered from its own cache.
function followRuns() {
  // Cleared once per run: the nodes an expanding node turns into report as it (display_node).
  let started = new Set();
  api.addEventListener("execution_start", () => { started = new Set(); });
  api.addEventListener("executing", ({ detail }) => {
    const node = packNode(detail?.display_node ?? detail?.node ?? detail);
    if (!node || started.has(node)) return;
    started.add(node);
    node.flux2Flex.lastStatus = "";
    say(node, {});
  });
  api.addEventListener("progress_text", ({ detail }) => {
    const node = packNode(detail?.nodeId);
    if (node) node.flux2Flex.lastStatus = detail.text;
  });
  api.addEventListener("execution_error", ({ detail }) => {
    const node = packNode(detail?.node_id);
    if (node) say(node, { status: detail.exception_message ?? "" });
  });
  api.addEventListener("execution_interrupted", ({ detail }) => {
    const node = packNode(detail?.node_id);
    if (node) say(node, { status: node.flux2Flex.lastStatus });
  });
  api.addEventListener("execution_cached", ({ detail }) => {
    for (const id of detail?.nodes ?? []) {
      const node = packNode(id);
      const last = node?.flux2Flex?.lastReport;
      if (last) say(node, { report: `${t("report.cached")}\n${last}` });
    }
  });
}

// One release of Generate and Edit carried a Local Model's four widgets after use_cache, where
// key_name and upload_format now are: a workflow saved by it has two values more than the node
// has widgets, and its values for those two belong to widgets that moved to the Local Model node.
const LEGACY_LOCAL_WIDGETS = ["key_name", "upload_format"];

function dropLegacyLocalValues(node, info, nodeData) {
  const saved = info?.widgets_values;
  const serialized = (node.widgets ?? []).filter((w) => w.name !== PANEL_WIDGET && w.serialize !== false);
  if (!Array.isArray(saved) || saved.length !== serialized.length + 2) return;
  for (const name of LEGACY_LOCAL_WIDGETS) {
    const widget = node.widgets.find((w) => w.name === name);
    const spec = nodeData?.input?.required?.[name] ?? nodeData?.input?.optional?.[name];
    if (widget) widget.value = spec?.[1]?.default ?? "";
  }
}

function showReportOnNode(nodeType, nodeData) {
  const onConfigure = nodeType.prototype.onConfigure;
  nodeType.prototype.onConfigure = function (info) {
    const result = onConfigure?.apply(this, arguments);
    dropLegacyLocalValues(this, info, nodeData);
    return result;
  };
  const onNodeCreated = nodeType.prototype.onNodeCreated;
  nodeType.prototype.onNodeCreated = function () {
    const result = onNodeCreated?.apply(this, arguments);
    foldAdvanced(this);
    addPanel(this);
    return result;
  };
  const onExecuted = nodeType.prototype.onExecuted;
  nodeType.prototype.onExecuted = function (message) {
    onExecuted?.apply(this, arguments);
    const entry = message?.[UI_KEY]?.[0];
    if (!entry || !this.flux2Flex) return;
    this.flux2Flex.lastReport = entry.report;
    say(this, { report: entry.report });
  };
}

app.registerExtension({
  name: "FLUX2Flex.Nodes",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (REPORTING_NODES.has(nodeData?.name)) showReportOnNode(nodeType, nodeData);
  },
  async setup() {
    followRuns();
    setInterval(refreshAllNodes, REFRESH_MS);
  },
});
