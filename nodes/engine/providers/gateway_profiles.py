"""API gateways that resell FLUX.2 [flex] under their own key, as data: one profile each.

Gateways fall into two families that differ only in details a profile names:
- "openai-images": `POST {origin}{prefix}/images/generations`, a synchronous answer
  {created, data: [{url} or {b64_json}]} (APIYI, laozhang.ai, anyfast; openai_gateway.py);
- "bfl": BFL's own body under `{origin}{prefix}/{model}`, then `GET {prefix}/get_result?id=`
  on the gateway itself (DMXAPI, openai-hk, DeerAPI; bfl_gateway.py).

Each profile becomes a provider by its own name, with key variable `<NAME>_API_KEY` (upper case,
'-' as '_') and base URL override `FLUX_FLEX_<NAME>_URL`, which replaces the origin (scheme and
host) while the prefix stays. Users add gateways without code in a JSON file, `gateways.json`
(see `user_gateways_path`): {"version": 1, "gateways": {name: {field: value}}}, the fields named
by `GatewayProfile`; a bad or missing field is refused with its name.

The sources of each built-in profile are in its `source`; what they leave open is said in a
comment above it and in the README. Nothing here was called live.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping
from urllib.parse import urlsplit

from ..errors import InvalidRequestError
from ..keys import stored_keys_path
from ..request import MAX_INPUT_IMAGES

OPENAI_IMAGES = "openai-images"
BFL_FAMILY = "bfl"
FAMILIES = (OPENAI_IMAGES, BFL_FAMILY)
SIZE_STYLES = ("size", "width_height")  # "size": "WxH" in one field; else width and height
# How references travel (openai-images family). BFL's field names in the JSON body, each a data
# URI, needs no public hosting; multipart `image[]` files go to {prefix}/images/edits instead.
REFERENCE_FORMS = ("input_image_fields", "multipart_image_array")
ANSWER_FORMS = {OPENAI_IMAGES: ("url", "b64_json"), BFL_FAMILY: ("poll",)}
# The flex settings a gateway may name differently (or not take: None, said in the report).
SETTINGS = ("steps", "guidance", "seed", "safety_tolerance", "output_format", "prompt_upsampling")
NAME_PATTERN = re.compile(r"[a-z][a-z0-9-]{1,38}[a-z0-9]")
FIELD_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
HEADER_PATTERN = re.compile(r"[A-Za-z0-9-]{1,64}")
PREFIX_PATTERN = re.compile(r"(/[A-Za-z0-9._~-]+)*")
GATEWAYS_FILE_NAME = "gateways.json"
GATEWAYS_FILE_ENV = "FLUX_FLEX_GATEWAYS_FILE"
GATEWAYS_FORMAT_VERSION = 1
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class GatewayProfile:
    """Everything that tells one gateway from another of its family.

    `origin` is scheme and host (what FLUX_FLEX_<NAME>_URL replaces); `prefix` the path before
    the family's routes. `model` is the body's `model` (openai-images) or the path segment after
    the prefix (bfl). `fields` maps each flex setting to the gateway's name for it (None: not
    sent, and the report says so). `answer_form` is what the gateway documents (the stand-ins
    answer in it); the client reads a link or base64 whichever comes. Prices: `price_per_image_usd` for a flat price per call,
    `price_per_megapixel_usd` for BFL's rule (first output MP, each further MP, each input MP);
    neither: unknown, `price_note` says why.
    """

    name: str
    label: str
    family: str
    origin: str
    prefix: str
    model: str
    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer"
    fields: Mapping[str, str | None] = field(default_factory=lambda: MappingProxyType({s: s for s in SETTINGS}),
                                             hash=False)
    size_style: str = "size"
    reference_form: str = "input_image_fields"
    answer_form: str = "url"
    max_references: int = MAX_INPUT_IMAGES
    price_per_image_usd: float | None = None
    price_per_megapixel_usd: float | None = None
    price_note: str = "the gateway publishes no price for flex that could be read; see its dashboard"
    source: str = ""
    key_variable: str = ""  # only where a provider's key variable predates the rule (CometAPI's COMETAPI_KEY)

    @property
    def key_env_var(self) -> str:
        """<NAME>_API_KEY (upper case, '-' as '_'), unless the profile names its own."""
        return self.key_variable or self.name.upper().replace("-", "_") + "_API_KEY"

    @property
    def field_names(self) -> Mapping[str, str | None]:
        """Every setting's field name: the profile's where it names one, else BFL's own."""
        return {setting: self.fields.get(setting, setting) for setting in SETTINGS}


def _refuse(gateway: str, field_name: str, value: object, allowed: str) -> InvalidRequestError:
    return InvalidRequestError(f"gateway {gateway}: {field_name}", value, allowed)


def _text(data: Mapping[str, Any], gateway: str, name: str, *, default: str | None = None,
          pattern: re.Pattern[str] | None = None, allowed: str = "a non-empty string") -> str:
    value = data.get(name, default)
    if not isinstance(value, str) or not value.strip() or (pattern is not None and not pattern.fullmatch(value)):
        raise _refuse(gateway, name, value, allowed)
    return value.strip()


def _origin(value: object, gateway: str, name: str = "origin") -> str:
    """https://host[:port] with nothing after it (plain http only to this machine)."""
    parts = urlsplit(value) if isinstance(value, str) else None
    loopback = parts is not None and parts.hostname in LOOPBACK_HOSTS
    if (parts is None or not parts.hostname or parts.path not in ("", "/") or parts.query or parts.username
            or not (parts.scheme == "https" or (parts.scheme == "http" and loopback))):
        raise _refuse(gateway, name, value, "an https origin such as https://api.example.com (scheme and host only; "
                      "the path goes in prefix)")
    return f"{parts.scheme}://{parts.netloc}"


def _price(data: Mapping[str, Any], gateway: str, name: str) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 10:
        raise _refuse(gateway, name, value, "a price in US dollars from 0 to 10, or absent when unknown")
    return float(value)


def profile_from_mapping(name: str, data: object) -> GatewayProfile:
    """A profile from the JSON a user wrote, every field checked; the error names the field."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise InvalidRequestError("gateway name", name, "3 to 40 lower-case letters, digits or '-', starting with a "
                                  "letter")
    if not isinstance(data, Mapping):
        raise _refuse(name, "profile", data, "an object of the profile's fields")
    known = {f.name for f in fields(GatewayProfile)} - {"name"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise _refuse(name, unknown[0], data[unknown[0]], f"one of the profile's fields ({', '.join(sorted(known))})")
    family = _text(data, name, "family", allowed=" or ".join(FAMILIES))
    if family not in FAMILIES:
        raise _refuse(name, "family", family, " or ".join(FAMILIES))
    field_map = data.get("fields", {})
    if not isinstance(field_map, Mapping):
        raise _refuse(name, "fields", field_map, f"an object mapping {', '.join(SETTINGS)} to field names (or null)")
    for setting, value in field_map.items():
        if setting not in SETTINGS:
            raise _refuse(name, f"fields.{setting}", value, f"one of {', '.join(SETTINGS)}")
        if value is not None and not (isinstance(value, str) and FIELD_NAME_PATTERN.fullmatch(value)):
            raise _refuse(name, f"fields.{setting}", value, "a JSON field name, or null when the gateway takes none")
    choices = dict(size_style=SIZE_STYLES, reference_form=REFERENCE_FORMS, answer_form=ANSWER_FORMS[family])
    chosen = {key: _text(data, name, key, default=options[0], allowed=" or ".join(options))
              for key, options in choices.items()}
    for key, options in choices.items():
        if chosen[key] not in options:
            raise _refuse(name, key, chosen[key], " or ".join(options))
    max_references = data.get("max_references", MAX_INPUT_IMAGES)
    if isinstance(max_references, bool) or not isinstance(max_references, int) or \
            not 0 <= max_references <= MAX_INPUT_IMAGES:
        raise _refuse(name, "max_references", max_references, f"a whole number from 0 to {MAX_INPUT_IMAGES}")
    prefix = data.get("prefix", "")
    if not isinstance(prefix, str) or not PREFIX_PATTERN.fullmatch(prefix.rstrip("/")):
        raise _refuse(name, "prefix", prefix, "a path such as /v1 or /flux/v1 (or empty)")
    auth_scheme = data.get("auth_scheme", "Bearer")
    if not isinstance(auth_scheme, str) or (auth_scheme and not HEADER_PATTERN.fullmatch(auth_scheme)):
        raise _refuse(name, "auth_scheme", auth_scheme, "a word such as Bearer, or empty for the bare key")
    return GatewayProfile(
        name=name,
        label=_text(data, name, "label", default=name),
        family=family,
        origin=_origin(data.get("origin"), name),
        prefix=prefix.rstrip("/"),
        model=_text(data, name, "model", pattern=re.compile(r"[A-Za-z0-9._/:-]{1,100}"),
                    allowed="the gateway's model id, such as flux-2-flex"),
        auth_header=_text(data, name, "auth_header", default="Authorization", pattern=HEADER_PATTERN,
                          allowed="an HTTP header name such as Authorization"),
        auth_scheme=auth_scheme,
        fields=MappingProxyType({setting: field_map.get(setting, setting) for setting in SETTINGS}),
        max_references=max_references,
        price_per_image_usd=_price(data, name, "price_per_image_usd"),
        price_per_megapixel_usd=_price(data, name, "price_per_megapixel_usd"),
        price_note=str(data.get("price_note") or GatewayProfile.price_note),
        source=str(data.get("source") or "added by the user"),
        key_variable=_text(data, name, "key_variable", default="", pattern=re.compile(r"[A-Z][A-Z0-9_]{2,63}"),
                           allowed="an environment variable name in capitals") if data.get("key_variable") else "",
        **chosen,
    )


def _profile(**values: Any) -> GatewayProfile:
    """A built-in profile, checked by the same rules as a user's."""
    name = values.pop("name")
    return profile_from_mapping(name, values)


# The documented flex gateways. Read in December 2026 from the pages in `source` (CometAPI's in
# November 2026).
BUILT_IN_PROFILES: dict[str, GatewayProfile] = {profile.name: profile for profile in (
    _profile(
        name="cometapi", label="CometAPI", family=BFL_FAMILY, origin="https://api.cometapi.com", prefix="/flux/v1",
        model="flux-2-flex", answer_form="poll", key_variable="COMETAPI_KEY",
        price_note="CometAPI's published figures disagree ($0.008 per request on its Flux page, $0.192 or $0.24 on "
        "its Replicate-route page); see your CometAPI dashboard",
        source="apidoc.cometapi.com (flux generate, flux query)",
    ),
    # APIYI's edit route: its pages disagree (multipart image[] to /v1/images/edits, JSON input_image fields
    # to /v1/images/generations, multipart URL strings); the JSON form with data URIs is used, the one that
    # needs no public hosting. Steps and guidance are named only on its edit page.
    _profile(
        name="apiyi", label="APIYI", family=OPENAI_IMAGES, origin="https://api.apiyi.com", prefix="/v1",
        model="flux-2-flex", size_style="size", reference_form="input_image_fields", answer_form="url",
        price_note="APIYI says FLUX.2 [pro/max/flex] cost what BFL charges at 1 MP, but prints no flex figure; see "
        "your APIYI dashboard",
        source="https://docs.apiyi.com/en/api-capabilities/flux/text-to-image, "
        "https://docs.apiyi.com/en/api-capabilities/flux-image-edit, https://docs.apiyi.com/en/api-capabilities/flux/"
        "overview",
    ),
    # laozhang.ai: steps and guidance are not named on the pages read, so they go under BFL's names.
    _profile(
        name="laozhang", label="laozhang.ai", family=OPENAI_IMAGES, origin="https://api.laozhang.ai", prefix="/v1",
        model="flux-2-flex", size_style="size", reference_form="input_image_fields", answer_form="url",
        price_per_image_usd=0.06, price_note="laozhang.ai's flex page: $0.06 per call",
        source="https://docs.laozhang.ai/en/api-capabilities/flux-image-edit, "
        "https://docs.laozhang.ai/en/api-capabilities/flux-image-generation",
    ),
    # anyfast: its flex page shows text to image only; references go as on its kontext page (input_image, data
    # URIs), steps and guidance under BFL's names.
    _profile(
        name="anyfast", label="anyfast", family=OPENAI_IMAGES, origin="https://www.anyfast.ai", prefix="/v1",
        model="flux-2-flex", size_style="size", reference_form="input_image_fields", answer_form="b64_json",
        source="https://docs.anyfast.ai/api-reference/model-api/blackforestlabs/flux-2-flex",
    ),
    _profile(
        name="dmxapi", label="DMXAPI", family=BFL_FAMILY, origin="https://www.dmxapi.cn", prefix="/flux/v1",
        model="flux-2-flex", answer_form="poll",
        source="https://doc.dmxapi.cn/flux-2-flex.html, https://doc.dmxapi.com/img-flux-chaxun.html",
    ),
    _profile(
        name="openai-hk", label="openai-hk", family=BFL_FAMILY, origin="https://api.openai-hk.com", prefix="/bfl/v1",
        model="flux-2-flex", answer_form="poll",
        price_note="openai-hk: flux-2-flex \"starts from 6 cost\" (1 cost = $0.01 before its exchange-rate markup); "
        "the submit answer's cost is shown in the report",
        source="https://oauth.openai-hk.com/docs/en/lab/bfl-flux.html",
    ),
    # DeerAPI's model list was not read: flux-2-flex under /flux/v1 follows its documented route.
    _profile(
        name="deerapi", label="DeerAPI", family=BFL_FAMILY, origin="https://api.deerapi.com", prefix="/flux/v1",
        model="flux-2-flex", answer_form="poll",
        source="https://apidoc.deerapi.com/api/image/flux/query-task",
    ),
)}


def user_gateways_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where user-added gateways live: FLUX_FLEX_GATEWAYS_FILE if set; else beside the stored keys
    (in ComfyUI: the pack's folder of the user, user/flux2_flex/); else the per-user config folder
    (~/.config/flux2-flex/gateways.json, %APPDATA%\\flux2-flex\\gateways.json on Windows)."""
    env = os.environ if environ is None else environ
    if env.get(GATEWAYS_FILE_ENV):
        return Path(env[GATEWAYS_FILE_ENV])
    keys = stored_keys_path()
    if keys is not None:
        return keys.parent / GATEWAYS_FILE_NAME
    if os.name == "nt" and env.get("APPDATA"):
        base = Path(env["APPDATA"])
    else:
        base = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "flux2-flex" / GATEWAYS_FILE_NAME


def read_user_gateways(path: Path | None = None) -> dict[str, GatewayProfile]:
    """The user's gateways, every one checked. A broken file or profile is refused with the field
    at fault (never skipped in silence: a run naming it would otherwise pay somewhere else)."""
    path = user_gateways_path() if path is None else path
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InvalidRequestError(str(path), "(unreadable)", f"a JSON file of gateway profiles ({error})") from None
    gateways = data.get("gateways") if isinstance(data, dict) else None
    if not isinstance(gateways, dict):
        raise InvalidRequestError(f"{path}: gateways", gateways, '{"version": 1, "gateways": {name: profile}}')
    return {name: profile_from_mapping(name, profile) for name, profile in gateways.items()}


def gateway_to_json(profile: GatewayProfile) -> dict[str, Any]:
    """A profile as the JSON a user writes (the settings form shows and stores this)."""
    return {f.name: (dict(getattr(profile, f.name)) if f.name == "fields" else getattr(profile, f.name))
            for f in fields(GatewayProfile) if f.name != "name"}
