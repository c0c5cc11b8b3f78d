"""Server-side half of the pack: routes that store provider keys and preview prices, and the
pack's user folder.

The browser posts a key once; the server writes it to ComfyUI's user folder (owner-only) and
the engine reads it from there. No route ever sends a key back: GET says only which providers
have one, and whether its environment variable (which takes precedence) is set. The price route
answers from the engine's pricing, so the price on a node and the run's report agree.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

import folder_paths
from aiohttp import web
from PIL import Image
from server import PromptServer

from .engine.errors import InvalidRequestError
from .engine.providers import KEY_ENV_VARS
from .engine.result_cache import ResultCache
from .engine.settings import configure
from .key_store import KEYS_FILE_NAME, KeyStore
from .price_preview import preview_for_browser

ROUTE = "/flux2_flex/keys"
PRICE_ROUTE = "/flux2_flex/price"
EXIF_ORIENTATION = 0x0112
QUARTER_TURNS = (5, 6, 7, 8)  # EXIF orientations that LoadImage's exif_transpose turns by 90 degrees
EXAMPLE_INPUTS = Path(__file__).resolve().parent.parent / "workflows" / "input_images"


def pack_user_folder() -> Path:
    """The pack's folder inside ComfyUI's user folder (ComfyUI empties its temp folder at start)."""
    return Path(folder_paths.get_user_directory()) / "flux2_flex"


def stored_keys_file() -> Path:
    return pack_user_folder() / KEYS_FILE_NAME


@functools.cache
def result_cache() -> ResultCache:
    """One result cache per ComfyUI process, shared by every node."""
    return ResultCache(pack_user_folder() / "result_cache")


def local_model_roots() -> list[Path]:
    """ComfyUI's models/diffusers folders (extra_model_paths included), read when a model is listed or picked."""
    return [Path(path) for path in folder_paths.get_folder_paths("diffusers")]


def key_status(store: KeyStore) -> dict[str, dict[str, object]]:
    stored = store.status()
    return {name: {"stored": stored[name], "env_var": env_var, "env_set": bool(os.environ.get(env_var))}
            for name, env_var in KEY_ENV_VARS.items()}


def configure_engine() -> None:
    """Tell the engine where ComfyUI keeps the stored keys and the diffusers model folders."""
    configure(stored_keys_file=stored_keys_file(), local_model_roots=tuple(local_model_roots()))


def register_routes() -> None:
    """Add the key routes; called once when ComfyUI loads the pack."""
    store = KeyStore(stored_keys_file(), tuple(KEY_ENV_VARS))
    routes = PromptServer.instance.routes

    @routes.get(ROUTE)
    async def get_keys(request: web.Request) -> web.Response:
        return web.json_response(key_status(store))

    @routes.post(ROUTE)
    async def post_key(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            store.save(str(body.get("provider", "")), str(body.get("key", "")))
        except (ValueError, AttributeError):
            return web.json_response({"error": "expected JSON {provider, key}"}, status=400)
        except InvalidRequestError as error:
            return web.json_response({"error": str(error)}, status=400)
        return web.json_response(key_status(store))

    @routes.post(PRICE_ROUTE)
    async def post_price(request: web.Request) -> web.Response:
        try:
            return web.json_response(preview_for_browser(await request.json(), loaded_image_size))
        except (ValueError, TypeError, AttributeError) as error:
            return web.json_response({"error": f"expected the node's widgets and inputs: {error}"}, status=400)


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

    from .engine.local import free as free_local_pipeline

    unload_comfy_models = model_management.unload_all_models
    if getattr(unload_comfy_models, "frees_flux_flex_pipeline", False):
        return

    @functools.wraps(unload_comfy_models)
    def unload_all_models(*args, **kwargs):
        free_local_pipeline()
        return unload_comfy_models(*args, **kwargs)

    unload_all_models.frees_flux_flex_pipeline = True
    model_management.unload_all_models = unload_all_models
