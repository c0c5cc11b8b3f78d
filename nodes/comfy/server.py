"""Server-side half of the pack: routes that store provider keys and preview prices, and the
pack's user folders.

The browser posts a key once; the server writes it to the pack's folder in ComfyUI's user folder
(owner-only) and the engine reads it from there. No route ever sends a key back: GET says only
which key names each provider has, and whether its environment variable (which takes precedence
for the default key) is set. Every key route is guarded by `request_guard` (same origin, the
pack's header, changes only from this machine) and every change is logged with the client's
address, never with the key. Provider options stored the same way (Microsoft Foundry's endpoint
and deployment) are not secrets: GET shows their values, so the form can show what is set. The price route answers from the engine's pricing, so the price
on a node and the run's report agree.

Multi-user ComfyUI (`--multi-user`): each ComfyUI user has their own folder, so their own keys,
result cache and journal: user/flux2_flex/users/<user id>/ (outside user/<user id>/, which
ComfyUI's /userdata route serves to the browser). ComfyUI names the user of a request by its
`comfy-user` header, but does not pass it on to the nodes of a prompt: neither a hidden input
nor extra_data carries it on 0.3.64 or 0.33.0. So a middleware notes the user of each POST
/prompt and an on-prompt handler writes it into the prompt's extra_data (overwriting anything
the client put there); while a prompt runs, `current_user()` reads it back from the prompt
queue's running item. A prompt without a known user runs no paid node (it fails closed).
Single-user ComfyUI keeps the one folder user/flux2_flex/ as before.
"""

from __future__ import annotations

import collections
import contextvars
import functools
import logging
import os
import re
import shutil
from pathlib import Path

import folder_paths
from aiohttp import web
from comfy.cli_args import args
from comfy_execution.utils import get_executing_context
from PIL import Image
from server import PromptServer

from .validation import queues_a_prompt
from ..engine.errors import FluxFlexError, InvalidRequestError, MissingApiKeyError
from ..engine.keys import DEFAULT_KEY_NAME, read_stored_keys, stored_setting
from ..engine.providers import (
    PROVIDER_NAMES, STORED_ENTRIES, STORED_ENV_VARS, StoredEntry, gateway_key_entries, make_provider,
)
from ..engine.providers.gateway_profiles import GATEWAYS_FILE_NAME, read_user_gateways
from ..engine.redaction import install_log_redaction, register_secret
from ..engine.result_cache import ResultCache
from ..engine.settings import configure
from ..logic.gateway_store import GatewayStore
from ..logic.key_store import KEYS_FILE_NAME, KeyStore
from ..logic.node_words import ENGLISH, Words
from ..logic.price_preview import preview_for_browser
from ..logic.request_guard import key_route_refusal, machine_names

ROUTE = "/flux2_flex/keys"
GATEWAYS_ROUTE = "/flux2_flex/gateways"
PRICE_ROUTE = "/flux2_flex/price"
LOCALE_ROUTE = "/flux2_flex/locale"
REMEMBERED_CLIENTS = 256  # browser tabs whose language is kept (the oldest is forgotten first)
EXIF_ORIENTATION = 0x0112
QUARTER_TURNS = (5, 6, 7, 8)  # EXIF orientations that LoadImage's exif_transpose turns by 90 degrees
PACK_ROOT = Path(__file__).resolve().parents[2]  # nodes/comfy/server.py -> the pack's folder
EXAMPLE_INPUTS = PACK_ROOT / "workflows" / "input_images"
PROMPT_USER_FIELD = "flux2_flex_user"  # in a prompt's extra_data: the ComfyUI user who queued it
USERS_FOLDER = "users"
USER_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,128}")  # ComfyUI's own ids are letters, digits, '-' and '_'
LOG = logging.getLogger("comfyui_flux2_flex")
NOT_QUEUING = object()  # outside a POST /prompt request
_queuing_user: contextvars.ContextVar[object] = contextvars.ContextVar("flux2_flex_queuing_user", default=NOT_QUEUING)


_client_languages: collections.OrderedDict[str, str] = collections.OrderedDict()


def note_client_language(client_id: str, locale: str) -> None:
    """Remember the language a browser tab shows (its Comfy.Locale), for the runs it queues."""
    if not client_id or len(client_id) > 128:
        return
    _client_languages[client_id] = locale
    _client_languages.move_to_end(client_id)
    while len(_client_languages) > REMEMBERED_CLIENTS:
        _client_languages.popitem(last=False)


def running_words() -> Words:
    """The pack's words for the running prompt, in the language of the tab that queued it
    (ComfyUI's `client_id` while it executes); English for a script or an unknown tab."""
    return Words(_client_languages.get(PromptServer.instance.client_id or "", ENGLISH))


class UnknownUserError(FluxFlexError):
    """Multi-user ComfyUI, but the prompt or request names no known user: use nobody's keys."""


def multi_user() -> bool:
    return bool(args.multi_user)


def pack_root() -> Path:
    """The pack's folder inside ComfyUI's user folder (ComfyUI empties its temp folder at start)."""
    return Path(folder_paths.get_user_directory()) / "flux2_flex"


def pack_user_folder(user: str | None = None) -> Path:
    """The pack's folder for one ComfyUI user: by default whoever queued the running prompt.

    Single-user ComfyUI: always the pack's one folder. Multi-user: user/flux2_flex/users/<id>;
    outside a running prompt the user must be given (a route knows it from its request).
    """
    user = user or current_user()
    if user is None:
        return pack_root()
    if not USER_ID_PATTERN.fullmatch(user):
        raise UnknownUserError(f"{user!r} is not a ComfyUI user id.")
    return pack_root() / USERS_FOLDER / user


def current_user() -> str | None:
    """The ComfyUI user who queued the running prompt; None on a single-user ComfyUI.

    ComfyUI runs one prompt at a time; the executing context names it where several are listed.
    Works from any thread (a batch's worker threads included), as it reads the prompt queue;
    while a POST /prompt is validated, it is the user who sends it (so a gateway named on the
    prompt is checked against that user's own gateways).
    """
    if not multi_user():
        return None
    queuing = _queuing_user.get()
    if queuing is not NOT_QUEUING:  # validating a prompt inside its POST /prompt: whoever sends it
        if not isinstance(queuing, str):
            raise UnknownUserError("The prompt was queued without a known ComfyUI user.")
        return queuing
    queue = PromptServer.instance.prompt_queue
    with queue.mutex:
        running = list(queue.currently_running.values())
    context = get_executing_context()
    if context is not None and len(running) > 1:
        running = [item for item in running if item[1] == context.prompt_id]
    user = running[0][3].get(PROMPT_USER_FIELD) if len(running) == 1 else None
    if not isinstance(user, str) or not user:
        raise UnknownUserError(
            "This ComfyUI runs with --multi-user, and the prompt was queued without a known user (the comfy-user "
            "header of the ComfyUI page), so no user's keys or cache are used. Queue it from the ComfyUI page.")
    return user


def stored_keys_file(user: str | None = None) -> Path:
    return pack_user_folder(user) / KEYS_FILE_NAME


def result_cache() -> ResultCache:
    """The result cache of whoever queued the running prompt (one per folder, shared by every node)."""
    return _result_cache_in(pack_user_folder() / "result_cache")


@functools.cache
def _result_cache_in(folder: Path) -> ResultCache:
    return ResultCache(folder)


def local_model_roots() -> list[Path]:
    """ComfyUI's models/diffusers folders (extra_model_paths included), read when a model is listed or picked."""
    return [Path(path) for path in folder_paths.get_folder_paths("diffusers")]


def gateway_store(user: str | None) -> GatewayStore:
    """The user's own gateways.json, beside their keys (where the engine reads it during their runs)."""
    return GatewayStore(pack_user_folder(user) / GATEWAYS_FILE_NAME)


def stored_entries(user: str | None) -> tuple[StoredEntry, ...]:
    """What the user may store beside their keys: every built-in provider's entries and the key of
    each gateway the user added."""
    try:
        gateways = read_user_gateways(gateway_store(user).path)
    except InvalidRequestError:
        gateways = {}
    return (*STORED_ENTRIES, *gateway_key_entries(gateways))


def key_store(user: str | None) -> KeyStore:
    return KeyStore(stored_keys_file(user), tuple(entry.name for entry in stored_entries(user)))


def key_status(store: KeyStore, entries: tuple[StoredEntry, ...]) -> dict[str, dict[str, object]]:
    """What the settings form shows, in the order the engine lists providers: per key, the names
    stored and whether its environment variable is set; per option (Foundry's endpoint), also its
    stored value, since an option is not a secret. A key itself is never in it."""
    names, stored = store.names(), read_stored_keys(store.path)
    status: dict[str, dict[str, object]] = {}
    for entry in entries:
        status[entry.name] = {"stored": DEFAULT_KEY_NAME in names[entry.name], "names": names[entry.name],
                              "env_var": entry.env_var, "env_set": bool(os.environ.get(entry.env_var)),
                              "label": entry.label}
        if entry.is_key:
            status[entry.name]["used_by"] = list(entry.used_by)
        else:
            status[entry.name].update(option=entry.option, option_of=entry.option_of, example=entry.example,
                                      value=stored_setting(entry.name, entry.env_var, environ={}, stored=stored))
    return status


def stored_gateway_names() -> list[str]:
    """The gateways stored on this server, for the node's provider list: built when ComfyUI lists
    its nodes (and again when it validates a prompt), so a gateway added in the settings is
    offered after a reload. On multi-user ComfyUI the list holds every user's (names only); a run
    uses the gateway of the user who queued it, and a name that user lacks is refused before paying."""
    files = [pack_root() / GATEWAYS_FILE_NAME, *(pack_root() / USERS_FOLDER).glob(f"*/{GATEWAYS_FILE_NAME}")]
    names: set[str] = set()
    for path in files:
        try:
            names.update(read_user_gateways(path))
        except FluxFlexError as error:
            LOG.warning("FLUX.2 Flex: %s is not usable: %s", path, error)
    return sorted(names - set(PROVIDER_NAMES))


def request_user(request: web.Request) -> str | None:
    """The ComfyUI user a request comes from (its comfy-user header, as ComfyUI checks it)."""
    if not multi_user():
        return None
    try:
        return PromptServer.instance.user_manager.get_request_user_id(request)
    except KeyError:
        raise UnknownUserError("Unknown ComfyUI user.") from None


def note_request_user(request: web.Request) -> None:
    """While this request is handled, its user is the one `current_user` names (None: unknown)."""
    try:
        _queuing_user.set(request_user(request))
    except UnknownUserError:
        _queuing_user.set(None)


@web.middleware
async def note_queuing_user(request: web.Request, handler):
    """Remember who sends a POST /prompt, for `stamp_prompt_user` (called inside that request)."""
    if queues_a_prompt(request):
        note_request_user(request)
    return await handler(request)


def stamp_prompt_user(json_data: dict) -> dict:
    """ComfyUI's on-prompt hook: write the queuing user into the prompt's extra_data."""
    extra = json_data.get("extra_data")
    if not isinstance(extra, dict):
        extra = json_data["extra_data"] = {}
    queuing = _queuing_user.get()
    extra[PROMPT_USER_FIELD] = queuing if isinstance(queuing, str) else None
    return json_data


def configure_engine() -> None:
    """Tell the engine where ComfyUI keeps the stored keys (the file of whoever queued the running
    prompt, on multi-user ComfyUI) and the diffusers model folders."""
    configure(stored_keys_file=lambda: stored_keys_file(), local_model_roots=tuple(local_model_roots()))


def register_routes() -> None:
    """Prepare the stored keys' redaction and add the routes; called once when ComfyUI loads the pack."""
    server = PromptServer.instance
    prepare_stored_keys()
    if multi_user():
        server.app.middlewares.append(note_queuing_user)
        server.add_on_prompt_handler(stamp_prompt_user)
    names = machine_names(address for address in str(args.listen or "").split(","))
    routes = server.routes

    def refused(request: web.Request, *, writes: bool) -> web.Response | None:
        reason = key_route_refusal(request.method, request.headers, request.remote, names=names, writes=writes)
        if reason is None:
            return None
        LOG.warning("FLUX.2 Flex: refused a %s of the stored keys from %s: %s", request.method, request.remote, reason)
        return web.json_response({"error": f"refused: {reason}"}, status=403)

    @routes.get(ROUTE)
    async def get_keys(request: web.Request) -> web.Response:
        refusal = refused(request, writes=False)
        if refusal is not None:
            return refusal
        try:
            user = request_user(request)
            return web.json_response(key_status(key_store(user), stored_entries(user)))
        except UnknownUserError as error:
            return web.json_response({"error": str(error)}, status=403)

    @routes.post(ROUTE)
    async def post_key(request: web.Request) -> web.Response:
        refusal = refused(request, writes=True)
        if refusal is not None:
            return refusal
        try:
            body = await request.json()
            user = request_user(request)
            store = key_store(user)
            provider, key = str(body.get("provider", "")), str(body.get("key", ""))
            name = store.save(provider, key, str(body.get("name", "") or ""))
        except InvalidRequestError as error:
            return web.json_response({"error": str(error)}, status=400)
        except (ValueError, AttributeError):
            return web.json_response({"error": "expected JSON {provider, name, key}"}, status=400)
        except UnknownUserError as error:
            return web.json_response({"error": str(error)}, status=403)
        LOG.info("FLUX.2 Flex: %s the %s key %r%s, from %s", "stored" if key.strip() else "deleted", provider, name,
                 f" of ComfyUI user {user}" if user else "", request.remote)
        return web.json_response(key_status(store, stored_entries(user)))

    @routes.get(GATEWAYS_ROUTE)
    async def get_gateways(request: web.Request) -> web.Response:
        refusal = refused(request, writes=False)
        if refusal is not None:
            return refusal
        try:
            return web.json_response({"gateways": gateway_store(request_user(request)).profiles()})
        except (UnknownUserError, InvalidRequestError) as error:
            return web.json_response({"error": str(error)}, status=403 if isinstance(error, UnknownUserError) else 400)

    @routes.post(GATEWAYS_ROUTE)
    async def post_gateway(request: web.Request) -> web.Response:
        """Store a gateway profile (checked field by field) or, with "profile": null, forget it."""
        refusal = refused(request, writes=True)
        if refusal is not None:
            return refusal
        try:
            body = await request.json()
            user = request_user(request)
            store = gateway_store(user)
            name, profile = str(body.get("name", "")), body.get("profile")
            store.save(name, profile)
        except InvalidRequestError as error:
            return web.json_response({"error": str(error)}, status=400)
        except (ValueError, AttributeError):
            return web.json_response({"error": "expected JSON {name, profile}"}, status=400)
        except UnknownUserError as error:
            return web.json_response({"error": str(error)}, status=403)
        LOG.info("FLUX.2 Flex: %s the gateway %r%s, from %s", "stored" if profile is not None else "deleted", name,
                 f" of ComfyUI user {user}" if user else "", request.remote)
        return web.json_response({"gateways": store.profiles()})

    @routes.post(LOCALE_ROUTE)
    async def post_locale(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            note_client_language(str(body["client_id"]), str(body["locale"]))
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": "expected JSON {client_id, locale}"}, status=400)
        return web.json_response({})

    @routes.post(PRICE_ROUTE)
    async def post_price(request: web.Request) -> web.Response:
        note_request_user(request)  # whose keys `has_key` looks at (multi-user)
        try:
            return web.json_response(preview_for_browser(await request.json(), loaded_image_size,
                                                         lambda provider, name: missing_key(provider, name) is None))
        except (ValueError, TypeError, AttributeError) as error:
            return web.json_response({"error": f"expected the node's widgets and inputs: {error}"}, status=400)


def missing_key(provider: str, key_name: str) -> str | None:
    """Why the provider cannot be paid from here (no key, no Foundry endpoint), or None; for the
    user who queues the prompt or asks the route. Never the key itself."""
    try:
        _ = make_provider(provider, key_choice=key_name).api_key
    except MissingApiKeyError as error:
        return str(error)
    except InvalidRequestError:
        return None  # an unknown provider: the provider widget's own check names it
    except UnknownUserError:
        return None  # a multi-user prompt without a known user fails closed when it runs
    return None


def prepare_stored_keys() -> None:
    """Migrate a key file of the first format, and make every known key redactable in log lines
    (the pack's, httpx's and ComfyUI's own handlers) before anything can log it."""
    legacy = KeyStore(pack_root() / KEYS_FILE_NAME, tuple(STORED_ENV_VARS))  # the single-user file, as before
    if legacy.migrate():
        LOG.info("FLUX.2 Flex: stored keys moved to the named-keys format (they are the default keys)")
    if multi_user() and legacy.path.is_file():
        LOG.warning("FLUX.2 Flex: %s holds keys stored before keys were per user; on this multi-user ComfyUI no "
                    "user gets them. Each user stores their own in Settings > FLUX.2 Flex, or move the file to "
                    "%s/<user id>/%s.", legacy.path, pack_root() / USERS_FOLDER, KEYS_FILE_NAME)
    for env_var in STORED_ENV_VARS.values():
        register_secret(os.environ.get(env_var, ""))
    files = [pack_root() / KEYS_FILE_NAME, *(pack_root() / USERS_FOLDER).glob(f"*/{KEYS_FILE_NAME}")]
    for path in files:
        for key in KeyStore(path, ()).all_keys():
            register_secret(key)
    install_log_redaction(*logging.getLogger().handlers)


def loaded_image_size(name: str) -> tuple[int, int] | None:
    """The size LoadImage will give the image it picked by this name, from the file's header alone.

    Only files inside ComfyUI's input, output and temp folders are read, so the route cannot be
    used to probe the rest of the disk; anything else is "unknown" and priced as a range.
    """
    folders = (folder_paths.get_input_directory(), folder_paths.get_output_directory(),
               folder_paths.get_temp_directory())
    try:
        path = Path(folder_paths.get_annotated_filepath(name)).resolve()
        if not any(path.is_relative_to(Path(folder).resolve()) for folder in folders):
            return None
        with Image.open(path) as picture:
            width, height = picture.size
            turned = picture.getexif().get(EXIF_ORIENTATION) in QUARTER_TURNS
    except (OSError, ValueError, SyntaxError):
        return None
    return (height, width) if turned else (width, height)


def install_example_inputs() -> None:
    """Copy the example workflows' images into ComfyUI's input folder, so their LoadImage nodes
    find them; a user's file of the same name is never overwritten."""
    target = Path(folder_paths.get_input_directory())
    for image in EXAMPLE_INPUTS.glob("*.png"):
        destination = target / image.name
        if not destination.exists():
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(image, destination)


def free_local_pipeline_on_unload() -> None:
    """Free the loaded local pipeline whenever ComfyUI unloads its own models (the Unload button,
    or running short of memory). ComfyUI has no hook for this, so its function is wrapped, once:
    a second call (a reloaded pack) finds the wrapper in place and leaves it."""
    import comfy.model_management as model_management

    from ..engine.local import free as free_local_pipeline

    unload_comfy_models = model_management.unload_all_models
    if getattr(unload_comfy_models, "frees_flux_flex_pipeline", False):
        return

    @functools.wraps(unload_comfy_models)
    def unload_all_models(*args, **kwargs):
        free_local_pipeline()
        return unload_comfy_models(*args, **kwargs)

    unload_all_models.frees_flux_flex_pipeline = True
    model_management.unload_all_models = unload_all_models
