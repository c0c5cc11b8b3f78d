// FLUX.2 [flex] nodes: a settings entry for provider keys, and on each node its price before a run
// and what the run cost after it.
//
// Keys are posted once to the pack's own route and stored server-side, owner-only, in ComfyUI's
// user folder. The settings entry uses a custom renderer and never calls the setter, so a key is
// never written into ComfyUI's settings JSON, a workflow or a PNG. The server only ever answers
// whether a key is stored.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

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
  const others = named.length ? `; named keys: ${named.join(", ")}` : "";
  if (status.env_set) return `${status.env_var} is set (it takes precedence)${others}`;
  return (status.stored ? "key stored" : `no key (set ${status.env_var} or paste one)`) + others;
}

function renderKeyForm() {
  const form = document.createElement("div");
  form.className = "flux2-flex-keys";
  form.style.cssText = "display:flex;flex-wrap:wrap;gap:6px;align-items:center";
  const provider = document.createElement("select");
  const name = document.createElement("input");
  name.className = "flux2-flex-key-name";
  name.placeholder = "name (empty: default key)";
  name.title = "Store several keys per provider under names (personal, client) and pick one by key_name on the node";
  name.style.width = "12em";
  const key = document.createElement("input");
  key.type = "password";
  key.autocomplete = "off";
  key.placeholder = "paste a key, or leave empty to forget the stored one";
  key.style.minWidth = "18em";
  const save = document.createElement("button");
  save.textContent = "Save";
  const state = document.createElement("span");
  state.className = "flux2-flex-key-state";
  form.append(provider, name, key, save, state);

  let statuses = {};
  const show = () => { state.textContent = statuses[provider.value] ? describe(statuses[provider.value]) : ""; };
  const load = async () => {
    try {
      statuses = await fetchKeyStatus();
      provider.replaceChildren(...Object.keys(statuses).map((name) => new Option(name, name)));
      show();
    } catch (error) {
      state.textContent = `could not read key status: ${error.message}`;
    }
  };
  provider.addEventListener("change", show);
  save.addEventListener("click", async () => {
    try {
      statuses = await storeKey(provider.value, name.value.trim(), key.value);
      key.value = "";
      show();
    } catch (error) {
      state.textContent = `not saved: ${error.message}`;
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
    local_node: inputNode(node, "local_model")?.type ?? null,  // which local path: its Edit sizes differ
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
  price.textContent = "Price: …";
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
  node.flux2Flex = { widget, price, report, asked: null };
}

async function refreshPrice(node) {
  const state = node.flux2Flex;
  const question = JSON.stringify(priceQuestion(node));
  if (question === state.asked) return;
  state.asked = question;
  try {
    const response = await api.fetchApi(PRICE_ROUTE, { method: "POST", body: question,
      headers: { "Content-Type": "application/json" } });
    const answer = await response.json();
    if (state.asked !== question) return; // the node changed again meanwhile
    if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
    state.price.textContent = answer.problem ? `Price: ${answer.text} (${answer.detail})` : `Price: ${answer.text}`;
    state.price.title = answer.detail;
    state.price.style.color = answer.problem ? "#ff6b6b" : "#f5b642";
  } catch (error) {
    state.asked = null; // ask again on the next tick
    state.price.textContent = `Price: not available (${error.message})`;
  }
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
    this.flux2Flex.report.textContent = `Last run:\n${entry.report}`;
    this.setDirtyCanvas?.(true, false);
  };
}

app.registerExtension({
  name: "FLUX2Flex.Nodes",
  settings: [
    {
      id: "FLUX2Flex.Keys.Store",
      category: ["FLUX.2 Flex", "API keys", "Provider keys"],
      name: "Provider API key (stored on the ComfyUI server, never in workflows)",
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
