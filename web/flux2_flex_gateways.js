// FLUX.2 [flex] nodes: a settings entry to add an API gateway that is not built in (a reseller of
// flex in the OpenAI images shape or in BFL's own shape), without code.
//
// The profile is posted to the pack's own route, checked field by field on the server and stored
// beside the keys (user/flux2_flex/gateways.json, the file the command line reads too), never in
// ComfyUI's settings JSON or a workflow. The gateway's key is stored like any provider's, in the
// keys entry; after a reload the gateway is offered in the node's provider list.
import { app } from "../../scripts/app.js";
import { addStyle, element, packRoute, postJson, showMessage } from "./flux2_flex_form.js";
import { t, translationsLoaded } from "./flux2_flex_i18n.js";

const GATEWAYS_ROUTE = "/flux2_flex/gateways";

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

const readGateways = async () => (await packRoute(GATEWAYS_ROUTE)).gateways;
const postGateway = async (name, profile) => (await postJson(GATEWAYS_ROUTE, { name, profile })).gateways;

function renderGatewayForm() {
  addStyle();
  const form = element("div", "flux2-flex-form flux2-flex-gateways");
  const choice = element("select");
  const name = element("input", "", { placeholder: TEXT.namePlaceholder() });
  const save = element("button", "flux2-flex-save", { type: "button", textContent: TEXT.save() });
  const remove = element("button", "", { type: "button", textContent: TEXT.remove() });
  const row = element("div", "flux2-flex-row");
  row.append(choice, name, save, remove);
  const profile = element("textarea", "", { spellcheck: false, title: TEXT.profileHelp() });
  const state = element("div", "flux2-flex-message flux2-flex-gateway-state", { role: "status" });
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
  choice.addEventListener("change", show);
  save.addEventListener("click", async () => {
    const gateway = name.value.trim();
    try {
      gateways = await postGateway(gateway, JSON.parse(profile.value));
      list(gateway);
      showMessage(state, TEXT.saved(gateway));
    } catch (error) {
      showMessage(state, TEXT.failed(error.message), true);
    }
  });
  remove.addEventListener("click", async () => {
    const gateway = choice.value;
    try {
      gateways = await postGateway(gateway, null);
      list();
      showMessage(state, TEXT.removed(gateway));
    } catch (error) {
      showMessage(state, TEXT.failed(error.message), true);
    }
  });
  Promise.all([readGateways(), translationsLoaded]).then(([stored]) => { gateways = stored; list(); })
    .catch((error) => showMessage(state, TEXT.unreadable(error.message), true));
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
