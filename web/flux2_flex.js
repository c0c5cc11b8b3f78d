// FLUX.2 [flex] nodes: a settings entry for provider keys, and each run's cost shown on its node.
//
// Keys are posted once to the pack's own route and stored server-side, owner-only, in ComfyUI's
// user folder. The settings entry uses a custom renderer and never calls the setter, so a key is
// never written into ComfyUI's settings JSON, a workflow or a PNG. The server only ever answers
// whether a key is stored.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const KEYS_ROUTE = "/flux2_flex/keys";
const UI_KEY = "flux2_flex";
const NODE_PREFIX = "FluxFlex";

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

function showReportOnNode(nodeType) {
  const onExecuted = nodeType.prototype.onExecuted;
  nodeType.prototype.onExecuted = function (message) {
    onExecuted?.apply(this, arguments);
    const entry = message?.[UI_KEY]?.[0];
    if (!entry) return;
    const firstLine = String(entry.report).split("\n").find((line) => line.includes("$")) || "";
    this.flux2FlexCost = entry.reported_cost != null
      ? `${firstLine} · provider reported ${entry.reported_cost} credits`
      : firstLine;
    this.setDirtyCanvas(true, false);
  };
  const onDrawForeground = nodeType.prototype.onDrawForeground;
  nodeType.prototype.onDrawForeground = function (ctx) {
    onDrawForeground?.apply(this, arguments);
    if (!this.flux2FlexCost || this.flags?.collapsed) return;
    ctx.save();
    ctx.font = "12px sans-serif";
    ctx.fillStyle = "#f5b642";
    ctx.fillText(this.flux2FlexCost, 4, this.size[1] + 16);
    ctx.restore();
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
    if (nodeData?.name?.startsWith(NODE_PREFIX)) showReportOnNode(nodeType);
  },
});
