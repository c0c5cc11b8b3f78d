// The words the pack's web extension shows, in the user's ComfyUI language.
//
// They live with the node translations in the pack's locales/<lang>/main.json, under "flux2Flex".
// ComfyUI serves every pack's locale files merged at /i18n (ComfyUI 0.3.x and later); the
// frontend offers extensions no lookup of its own, so this module reads that answer once and
// looks a key up in the language of the Comfy.Locale setting, then in English. Placeholders are
// {name}; figures, provider names and the server's own messages are passed in unchanged.
// The server writes a run's receipt and status text itself, from the same files: it is told which
// language this tab shows (tellServerLanguage), so a run queued here reports in it.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const NAMESPACE = "flux2Flex";
const LOCALE_ROUTE = "/flux2_flex/locale";
const ENGLISH = "en";
let catalogs = {};

export const translationsLoaded = (async () => {
  try {
    const response = await api.fetchApi("/i18n");
    if (response.ok) catalogs = await response.json();
  } catch (error) {
    console.warn("FLUX.2 [flex]: no translations, showing English", error);
  }
})();

export function currentLocale() {
  return app.extensionManager?.setting?.get?.("Comfy.Locale")
    ?? app.ui?.settings?.getSettingValue?.("Comfy.Locale") ?? ENGLISH;
}

function lookup(locale, key) {
  let value = catalogs?.[locale]?.[NAMESPACE];
  for (const part of key.split(".")) value = value?.[part];
  return typeof value === "string" ? value : undefined;
}

export function t(key, values = {}) {
  const text = lookup(currentLocale(), key) ?? lookup(ENGLISH, key) ?? key;
  return text.replace(/\{(\w+)\}/g, (match, name) => (name in values ? String(values[name]) : match));
}

let toldServer = "";

// Called on every tick of the node extension: posts only when the tab's id or language changed.
export function tellServerLanguage() {
  const clientId = api.clientId ?? api.initialClientId;
  const told = `${clientId}|${currentLocale()}`;
  if (!clientId || told === toldServer) return;
  toldServer = told;
  api.fetchApi(LOCALE_ROUTE, { method: "POST", headers: { "Content-Type": "application/json" },
                               body: JSON.stringify({ client_id: clientId, locale: currentLocale() }) })
    .catch(() => { toldServer = ""; });
}
