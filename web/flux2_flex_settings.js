// FLUX.2 [flex] settings: provider keys, and provider options such as Microsoft Foundry's endpoint.
//
// Keys are posted once to the pack's own route and stored server-side, owner-only, in ComfyUI's
// user folder. These settings use custom renderers and never call the setter, so a key is never
// written into ComfyUI's settings JSON, a workflow or a PNG. The server answers only which key
// names are stored; an option (not a secret) comes back with its value. The providers and their
// options are the server's list, so a provider the server adds appears here without an edit.
//
// The controls borrow the frontend's own colours (flux2_flex_form.js: its CSS variables, with the
// older frontend's names as fallbacks), so the form looks like the settings around it in either theme.
import { app } from "../../scripts/app.js";
import { addStyle, element, field, packRoute, postJson, showMessage } from "./flux2_flex_form.js";
import { t, translationsLoaded } from "./flux2_flex_i18n.js";

const KEYS_ROUTE = "/flux2_flex/keys";
const DEFAULT_KEY_NAME = "default";  // the server's name for a key stored without one

// Every word the form shows, in the user's language (locales/<lang>/main.json, flux2Flex.keys);
// provider names, key names, option values and the server's messages go in unchanged. The settings'
// own names, tooltips and groups below stay English here: ComfyUI translates them by their id
// (locales/<lang>/settings.json and settingsCategories).
const TEXT = {
  provider: () => t("keys.provider"),
  providerChoice: (label, account) => t("keys.providerChoice", { label, account }),
  optionLabel: (label, option) => t("keys.optionLabel", { label, option }),
  keyName: () => t("keys.keyName"),
  keyNameHelp: () => t("keys.keyNameHelp"),
  key: () => t("keys.key"),
  keyPlaceholder: () => t("keys.keyPlaceholder"),
  save: () => t("keys.save"),
  forget: () => t("keys.forget"),
  usedBy: (providers) => t("keys.usedBy", { providers: providers.join(", ") }),
  storedNames: (names) => t("keys.storedNames", { names: names.map((name) => `'${name}'`).join(", ") }),
  noneStored: () => t("keys.noneStored"),
  envSet: (envVar) => t("keys.envSet", { envVar }),
  envSetOption: (envVar) => t("keys.envSetOption", { envVar }),
  keyStored: (account, name) => t("keys.keyStored", { account, name }),
  keyForgotten: (account, name) => t("keys.keyForgotten", { account, name }),
  optionStored: (label, option) => t("keys.optionStored", { label, option }),
  optionCleared: (label, option) => t("keys.optionCleared", { label, option }),
  pasteFirst: () => t("keys.pasteFirst"),
  notSaved: (message) => t("keys.notSaved", { message }),
  notRead: (message) => t("keys.notRead", { message }),
  noOptions: () => t("keys.noOptions"),
};

const readStatus = () => packRoute(KEYS_ROUTE);
const store = (provider, name, key) => postJson(KEYS_ROUTE, { provider, name, key });

function renderKeyForm() {
  addStyle();
  const form = element("div", "flux2-flex-form flux2-flex-keys");
  const provider = element("select", "flux2-flex-provider");
  const name = element("input", "flux2-flex-key-name", { placeholder: DEFAULT_KEY_NAME, title: TEXT.keyNameHelp() });
  const key = element("input", "flux2-flex-key", { type: "password", autocomplete: "off", placeholder: TEXT.keyPlaceholder() });
  const save = element("button", "flux2-flex-save", { type: "button", textContent: TEXT.save() });
  const forget = element("button", "flux2-flex-forget", { type: "button", textContent: TEXT.forget() });
  const state = element("div", "flux2-flex-note flux2-flex-key-state");
  const message = element("div", "flux2-flex-message", { role: "status" });
  const nameAndKey = element("div", "flux2-flex-row");
  nameAndKey.append(field(TEXT.keyName(), name), field(TEXT.key(), key));
  const buttons = element("div", "flux2-flex-row");
  buttons.append(save, forget);
  form.append(field(TEXT.provider(), provider), nameAndKey, buttons, state, message);

  let status = {};
  const show = () => {
    const entry = status[provider.value];
    if (!entry) return;
    const lines = [entry.names.length ? TEXT.storedNames(entry.names) : TEXT.noneStored()];
    if (entry.env_set) lines.push(TEXT.envSet(entry.env_var));
    if (entry.used_by.length > 1) lines.push(TEXT.usedBy(entry.used_by));
    state.textContent = lines.join(" ");
  };
  const send = async (keyValue) => {
    const account = provider.value;
    const keyName = name.value.trim() || DEFAULT_KEY_NAME;
    try {
      status = await store(account, name.value.trim(), keyValue);
      key.value = "";
      show();
      showMessage(message, keyValue ? TEXT.keyStored(account, keyName) : TEXT.keyForgotten(account, keyName));
    } catch (error) {
      showMessage(message, TEXT.notSaved(error.message), true);
    }
  };
  provider.addEventListener("change", () => { show(); showMessage(message, ""); });
  save.addEventListener("click", () => (key.value.trim() ? send(key.value) : showMessage(message, TEXT.pasteFirst(), true)));
  forget.addEventListener("click", () => send(""));
  translationsLoaded.then(readStatus).then((body) => {
    status = body;
    const accounts = Object.entries(status).filter(([, entry]) => !entry.option_of);
    provider.replaceChildren(...accounts.map(([account, entry]) => new Option(TEXT.providerChoice(entry.label, account), account)));
    show();
  }).catch((error) => showMessage(message, TEXT.notRead(error.message), true));
  return form;
}

function renderOptionForm() {
  addStyle();
  const form = element("div", "flux2-flex-form flux2-flex-options");
  const message = element("div", "flux2-flex-message", { role: "status" });

  const optionRow = (name, entry) => {
    const input = element("input", "flux2-flex-option", { type: "text", value: entry.value, placeholder: entry.example,
      spellcheck: false, autocomplete: "off" });
    const save = element("button", "flux2-flex-save", { type: "button", textContent: TEXT.save() });
    const row = element("div", "flux2-flex-row flux2-flex-bottom");
    row.dataset.option = name;
    row.append(field(TEXT.optionLabel(entry.label, entry.option), input), save);
    const box = element("div");
    box.append(row);
    if (entry.env_set) box.append(element("div", "flux2-flex-note", { textContent: TEXT.envSetOption(entry.env_var) }));
    save.addEventListener("click", async () => {
      const value = input.value.trim();
      try {
        const status = await store(name, "", value);
        input.value = status[name].value;
        showMessage(message, (value ? TEXT.optionStored : TEXT.optionCleared)(entry.label, entry.option));
      } catch (error) {
        showMessage(message, TEXT.notSaved(error.message), true);
      }
    });
    return box;
  };

  translationsLoaded.then(readStatus).then((status) => {
    const options = Object.entries(status).filter(([, entry]) => entry.option_of);
    form.replaceChildren(...options.map(([name, entry]) => optionRow(name, entry)), message);
    if (!options.length) showMessage(message, TEXT.noOptions());
  }).catch((error) => {
    form.append(message);
    showMessage(message, TEXT.notRead(error.message), true);
  });
  return form;
}

app.registerExtension({
  name: "FLUX2Flex.Settings",
  settings: [
    {
      id: "FLUX2Flex.Keys.Store",
      category: ["FLUX.2 Flex", "API keys", "Store"],
      name: "Provider key",
      tooltip: "Stored on the ComfyUI server, readable by its owner only. A key is never sent back to the browser, written into a workflow or into a PNG's metadata.",
      type: renderKeyForm,
      defaultValue: "",
    },
    {
      id: "FLUX2Flex.Keys.Options",
      category: ["FLUX.2 Flex", "Provider options", "Options"],
      name: "Options per provider",
      tooltip: "Per-account settings that are not secrets, such as Microsoft Foundry's endpoint. Stored on the server next to the keys, never in a workflow.",
      type: renderOptionForm,
      defaultValue: "",
    },
  ],
});
