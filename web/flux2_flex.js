// FLUX.2 [flex] nodes: a settings entry for provider keys, and on each node its price before a run
// and what the run cost after it.
//
// Keys are posted once to the pack's own route and stored server-side, owner-only, in ComfyUI's
// user folder. The settings entry uses a custom renderer and never calls the setter, so a key is
// never written into ComfyUI's settings JSON, a workflow or a PNG. The server only ever answers
// whether a key is stored.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { currentLocale, t, translationsLoaded } from "./flux2_flex_i18n.js";

const KEYS_ROUTE = "/flux2_flex/keys";
const UI_KEY = "flux2_flex";

// The pack's key routes refuse any request without this header: a foreign page cannot send it.
const KEY_ROUTE_HEADERS = { "X-Flux2-Flex": "1" };

async function fetchKeyStatus() {
  const response = await api.fetchApi(KEYS_ROUTE, { headers: { ...KEY_ROUTE_HEADERS } });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

async function storeKey(provider, name, key) {
  const response = await api.fetchApi(KEYS_ROUTE, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...KEY_ROUTE_HEADERS },
    body: JSON.stringify({ provider, name, key }),
  });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

function describe(status) {
  const named = (status.names || []).filter((name) => name !== "default");
  const others = named.length ? t("keys.named", { names: named.join(", ") }) : "";
  if (status.env_set) return t("keys.envSet", { env_var: status.env_var }) + others;
  return (status.stored ? t("keys.stored") : t("keys.missing", { env_var: status.env_var })) + others;
}

function renderKeyForm() {
  const form = document.createElement("div");
  form.className = "flux2-flex-keys";
  form.style.cssText = "display:flex;flex-wrap:wrap;gap:6px;align-items:center";
  const provider = document.createElement("select");
  const name = document.createElement("input");
  name.className = "flux2-flex-key-name";
  name.placeholder = t("keys.namePlaceholder");
  name.title = t("keys.nameTitle");
  name.style.width = "12em";
  const key = document.createElement("input");
  key.type = "password";
  key.autocomplete = "off";
  key.placeholder = t("keys.keyPlaceholder");
  key.style.minWidth = "18em";
  const save = document.createElement("button");
  save.textContent = t("keys.save");
  const state = document.createElement("span");
  state.className = "flux2-flex-key-state";
  form.append(provider, name, key, save, state);

  let statuses = {};
  const show = () => { state.textContent = statuses[provider.value] ? describe(statuses[provider.value]) : ""; };
  const load = async () => {
    try {
      await translationsLoaded;
      statuses = await fetchKeyStatus();
      provider.replaceChildren(...Object.keys(statuses).map((name) => new Option(name, name)));
      show();
    } catch (error) {
      state.textContent = t("keys.readFailed", { error: error.message });
    }
  };
  provider.addEventListener("change", show);
  save.addEventListener("click", async () => {
    try {
      statuses = await storeKey(provider.value, name.value.trim(), key.value);
      key.value = "";
      show();
    } catch (error) {
      state.textContent = t("keys.notSaved", { error: error.message });
    }
  });
  load();
  return form;
}

// --- The price before a run and the cost after it, on the node itself -------------------------
//
// Shown in a DOM widget rather than drawn on the canvas: the Vue node view renders nodes as DOM
// elements and never calls onDrawForeground, while a DOM widget appears in both views and on old
// frontends. The widget is not serialized, so it never enters a workflow or the queued prompt.
// The figures come from the server (the engine's pricing), asked whenever what they depend on
// changes; the browser only says which widgets are set and which images are wired.
const PRICE_ROUTE = "/flux2_flex/price";
const PRICED_NODES = new Set(["FluxFlexGenerate", "FluxFlexEdit", "FluxFlexCostEstimate"]);
const PANEL_WIDGET = "flux2_flex_price";
const REFERENCE_BATCH = "FluxFlexReferenceBatch";
const LOCAL_MODEL_NODES = new Set(["FluxFlexLocalModel", "FluxFlexNativeModel"]);  // diffusers, ComfyUI files
const LOAD_IMAGE = "LoadImage";
const REFRESH_MS = 400;

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

function priceQuestion(node) {
  const connected = (name) => inputNode(node, name) != null;
  return {
    node: node.type,
    widgets: widgetValues(node),
    image: connected("image") ? socketImages(node, "image") : null,
    references: connected("references") ? socketImages(node, "references") : null,
    local: LOCAL_MODEL_NODES.has(inputNode(node, "local_model")?.type),
  };
}

function addPricePanel(node) {
  const panel = document.createElement("div");
  panel.className = "flux2-flex-panel";
  panel.style.cssText = "font:12px sans-serif;line-height:1.35;padding:2px 4px;overflow:auto;white-space:pre-wrap;"
    + "color:var(--input-text,#ddd);";
  const price = document.createElement("div");
  price.className = "flux2-flex-price";
  price.style.cssText = "color:#f5b642;font-weight:600";
  const report = document.createElement("div");
  report.className = "flux2-flex-report";
  report.style.cssText = "opacity:0.9";
  panel.append(price, report);
  const widget = node.addDOMWidget(PANEL_WIDGET, "flux2flex_price", panel, {
    serialize: false,
    hideOnZoom: false,
    getValue: () => undefined,
    setValue: () => {},
    getMinHeight: () => 40,
    getMaxHeight: () => 200,
  });
  widget.serialize = false;
  // What the panel shows, kept as data so a change of Comfy.Locale redraws it in the new language.
  node.flux2Flex = { widget, price, report, asked: null, answer: null, error: null, lastRun: null, locale: null };
  showPanel(node.flux2Flex);
}

// The price line's words; the figures are the server's ($0.050, ~$0.100-$0.450) and stay as sent.
function priceLine(answer, error) {
  if (error) return t("price.unavailable", { error });
  if (!answer) return t("price.pending");
  if (answer.problem) return t("price.problem", { detail: answer.detail });
  if (answer.usd_low === null) return t("price.unknown");
  if (answer.usd_high === 0) return t("price.free");
  return t("price.line", { price: answer.text });
}

function showPanel(state) {
  state.locale = currentLocale();
  state.price.textContent = priceLine(state.answer, state.error);
  state.price.title = state.answer?.detail ?? "";
  state.price.style.color = state.answer?.problem ? "#ff6b6b" : "#f5b642";
  state.report.textContent = state.lastRun === null ? "" : `${t("report.lastRun")}\n${state.lastRun}`;
}

async function refreshPrice(node) {
  const state = node.flux2Flex;
  if (state.locale !== currentLocale()) showPanel(state);
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
  showPanel(state);
}

function refreshAllPrices() {
  for (const node of app.graph?._nodes ?? []) {
    if (node.flux2Flex) refreshPrice(node);
  }
}

function showReportOnNode(nodeType) {
  const onNodeCreated = nodeType.prototype.onNodeCreated;
  nodeType.prototype.onNodeCreated = function () {
    const result = onNodeCreated?.apply(this, arguments);
    addPricePanel(this);
    return result;
  };
  const onExecuted = nodeType.prototype.onExecuted;
  nodeType.prototype.onExecuted = function (message) {
    onExecuted?.apply(this, arguments);
    const entry = message?.[UI_KEY]?.[0];
    if (!entry || !this.flux2Flex) return;
    this.flux2Flex.lastRun = entry.report;
    showPanel(this.flux2Flex);
    this.setDirtyCanvas?.(true, false);
  };
}

app.registerExtension({
  name: "FLUX2Flex.Nodes",
  settings: [
    {
      id: "FLUX2Flex.Keys.Store",
      category: ["FLUX.2 Flex", "API keys", "Provider keys"],
      name: "Provider API key (stored on the ComfyUI server, never in workflows)", // locales/*/settings.json
      type: renderKeyForm,
      defaultValue: "",
    },
  ],
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (PRICED_NODES.has(nodeData?.name)) showReportOnNode(nodeType);
  },
  async setup() {
    setInterval(refreshAllPrices, REFRESH_MS);
  },
});
