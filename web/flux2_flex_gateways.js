// FLUX.2 [flex] nodes: a settings entry to add an API gateway that is not built in (a reseller of
// flex in the OpenAI images shape or in BFL's own shape), without code.
//
// The profile is posted to the pack's own route, checked field by field on the server and stored
// beside the keys (user/flux2_flex/gateways.json, the file the command line reads too), never in
// ComfyUI's settings JSON or a workflow. The gateway's key is stored like any provider's, in the
// keys entry; after a reload the gateway is offered in the node's provider list.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { t, translationsLoaded } from "./flux2_flex_i18n.js";

const GATEWAYS_ROUTE = "/flux2_flex/gateways";
const ROUTE_HEADERS = { "X-Flux2-Flex": "1" };  // the pack's routes refuse requests without it

// Every word the form shows, in the user's language (locales/<lang>/main.json, flux2Flex.gateways);
// gateway names and the server's messages go in unchanged. The setting's own name, tooltip and
// groups below stay English here: ComfyUI translates them by their id (settings.json, settingsCategories).
const TEXT = {
  newGateway: () => t("gateways.newGateway"),
  namePlaceholder: () => t("gateways.namePlaceholder"),
  profileHelp: () => t("gateways.profileHelp"),
  save: () => t("gateways.save"),
  remove: () => t("gateways.remove"),
  saved: (name) => t("gateways.saved", { name }),
  removed: (name) => t("gateways.removed", { name }),
  failed: (message) => t("gateways.failed", { message }),
  unreadable: (message) => t("gateways.unreadable", { message }),
};

// A starting point: the OpenAI-images family as APIYI speaks it.
const TEMPLATE = {
  family: "openai-images", label: "My gateway", origin: "https://api.example.com", prefix: "/v1",
  model: "flux-2-flex", size_style: "size", reference_form: "input_image_fields", answer_form: "url",
  fields: { steps: "steps", guidance: "guidance" }, max_references: 8,
};

async function callRoute(options = {}) {
  const response = await api.fetchApi(GATEWAYS_ROUTE, { ...options, headers: { ...ROUTE_HEADERS, ...options.headers } });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body.gateways;
}

function postGateway(name, profile) {
  return callRoute({ method: "POST", headers: { "Content-Type": "application/json" },
                     body: JSON.stringify({ name, profile }) });
}

function styled(element, css) {
  element.style.cssText = css;
  return element;
}

const FIELD_CSS = "background:var(--comfy-input-bg);color:var(--input-text);border:1px solid var(--border-color);"
  + "border-radius:4px;padding:4px 6px;font:inherit";

function renderGatewayForm() {
  const form = styled(document.createElement("div"), "display:flex;flex-direction:column;gap:6px;width:100%");
  form.className = "flux2-flex-gateways";
  const row = styled(document.createElement("div"), "display:flex;gap:6px;align-items:center;flex-wrap:wrap");
  const choice = styled(document.createElement("select"), FIELD_CSS);
  const name = styled(document.createElement("input"), FIELD_CSS + ";width:14em");
  name.placeholder = TEXT.namePlaceholder();
  const save = document.createElement("button");
  save.textContent = TEXT.save();
  const remove = document.createElement("button");
  remove.textContent = TEXT.remove();
  row.append(choice, name, save, remove);
  const profile = styled(document.createElement("textarea"), FIELD_CSS + ";min-height:11em;font-family:monospace");
  profile.spellcheck = false;
  profile.title = TEXT.profileHelp();
  const state = styled(document.createElement("span"), "color:var(--descrip-text)");
  state.className = "flux2-flex-gateway-state";
  form.append(row, profile, state);

  let gateways = {};
  const show = () => {
    const chosen = choice.value;
    name.value = chosen;
    name.disabled = Boolean(chosen);
    remove.disabled = !chosen;
    profile.value = JSON.stringify(chosen ? gateways[chosen] : TEMPLATE, null, 1);
  };
  const list = (selected = "") => {
    choice.replaceChildren(new Option(TEXT.newGateway(), ""),
                           ...Object.keys(gateways).map((gateway) => new Option(gateway, gateway)));
    choice.value = selected in gateways ? selected : "";
    show();
  };
  const report = (text, failed = false) => {
    state.textContent = text;
    state.style.color = failed ? "var(--error-text)" : "var(--descrip-text)";
  };
  choice.addEventListener("change", show);
  save.addEventListener("click", async () => {
    const gateway = name.value.trim();
    try {
      gateways = await postGateway(gateway, JSON.parse(profile.value));
      list(gateway);
      report(TEXT.saved(gateway));
    } catch (error) {
      report(TEXT.failed(error.message), true);
    }
  });
  remove.addEventListener("click", async () => {
    const gateway = choice.value;
    try {
      gateways = await postGateway(gateway, null);
      list();
      report(TEXT.removed(gateway));
    } catch (error) {
      report(TEXT.failed(error.message), true);
    }
  });
  Promise.all([callRoute(), translationsLoaded]).then(([stored]) => { gateways = stored; list(); })
    .catch((error) => report(TEXT.unreadable(error.message), true));
  return form;
}

app.registerExtension({
  name: "FLUX2Flex.Gateways",
  settings: [
    {
      id: "FLUX2Flex.Gateways.Store",
      category: ["FLUX.2 Flex", "API gateways", "Add a gateway"],
      name: "Add an API gateway",
      tooltip: "A gateway that is not built in, as a profile (JSON; see the README, Gateways). Stored on the ComfyUI server beside the keys, never in a workflow.",
      type: renderGatewayForm,
      defaultValue: "",
    },
  ],
});
