// The pack's settings forms (provider keys and options, API gateways): the look of ComfyUI's own
// settings and the call to the pack's routes, in one place for every form.
import { api } from "../../scripts/api.js";

const STYLE_ID = "flux2-flex-settings-style";
// The pack's routes refuse any request without this header: a foreign page cannot send it.
const ROUTE_HEADERS = { "X-Flux2-Flex": "1" };

// Shapes and colours of ComfyUI 1.58's inputs and buttons; the fallbacks are older frontends' names.
const STYLE = `
.flux2-flex-form { display: flex; flex-direction: column; gap: 0.5rem; width: 26rem; max-width: 100%;
  font-size: 0.875rem; color: var(--foreground, var(--input-text, #ddd)); }
.flux2-flex-row { display: flex; gap: 0.5rem; align-items: center; }
.flux2-flex-row.flux2-flex-bottom { align-items: flex-end; }
.flux2-flex-label { font-size: 0.75rem; color: var(--muted-foreground, var(--descrip-text, #999)); }
.flux2-flex-field { display: flex; flex-direction: column; gap: 0.25rem; flex: 1; min-width: 0; }
.flux2-flex-form input, .flux2-flex-form select, .flux2-flex-form textarea { box-sizing: border-box;
  height: 2.5rem; width: 100%; min-width: 0; padding: 0 1rem; border: 2px solid transparent;
  border-radius: var(--radius-lg, 0.5rem); outline: none;
  background: var(--secondary, var(--comfy-input-bg, #222)); color: inherit; font: inherit; }
.flux2-flex-form select { cursor: pointer; }
.flux2-flex-form textarea { height: auto; min-height: 11em; padding: 0.5rem 1rem; font-family: monospace; }
.flux2-flex-form input::placeholder { color: var(--muted-foreground, var(--descrip-text, #999)); }
.flux2-flex-form input:focus-visible, .flux2-flex-form select:focus-visible,
.flux2-flex-form textarea:focus-visible {
  border-color: var(--border, var(--border-color, #4e4e4e)); }
.flux2-flex-form select:hover { background: var(--accent, var(--comfy-menu-bg, #353535)); }
.flux2-flex-form button { height: 2.5rem; padding: 0 1rem; border: none; border-radius: var(--radius-lg, 0.5rem);
  font: inherit; font-weight: 500; cursor: pointer; white-space: nowrap; color: var(--foreground, #fff);
  background: var(--secondary, var(--comfy-input-bg, #222)); }
.flux2-flex-form button:disabled { opacity: 0.5; cursor: default; }
.flux2-flex-form button:hover { background: var(--accent, var(--comfy-menu-bg, #353535)); }
.flux2-flex-form button.flux2-flex-save { background: var(--primary, #0b8ce9); color: #fff; }
.flux2-flex-form button.flux2-flex-save:hover { filter: brightness(1.1); }
.flux2-flex-note { font-size: 0.75rem; color: var(--muted-foreground, var(--descrip-text, #999)); }
.flux2-flex-message { min-height: 1.25rem; }
.flux2-flex-message.flux2-flex-error { color: var(--color-coral-500, var(--error-text, #f44)); }
`;

export function addStyle() {
  if (document.getElementById(STYLE_ID)) return;
  const style = document.createElement("style");
  style.id = STYLE_ID;
  style.textContent = STYLE;
  document.head.append(style);
}

// One of the pack's routes: its JSON answer, or an error carrying the server's message.
export async function packRoute(route, options = {}) {
  const response = await api.fetchApi(route, { ...options, headers: { ...options.headers, ...ROUTE_HEADERS } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

export function postJson(route, body) {
  return packRoute(route, { method: "POST", headers: { "Content-Type": "application/json" },
                            body: JSON.stringify(body) });
}

export function element(tag, className, properties = {}) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  return Object.assign(node, properties);
}

export function field(label, control) {
  const box = element("label", "flux2-flex-field");
  box.append(element("span", "flux2-flex-label", { textContent: label }), control);
  return box;
}

export function showMessage(target, text, isError = false) {
  target.textContent = text;
  target.classList.toggle("flux2-flex-error", isError);
}
