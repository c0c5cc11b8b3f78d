"""ComfyUI entry point of the FLUX.2 [flex] node pack.

ComfyUI imports this file as a package named after the folder it was cloned into, and owns a
top-level module called `nodes`; everything here is therefore imported relatively. Importing the
package outside ComfyUI (tests, the CLI) loads nothing from ComfyUI.

A user may end up with two copies in custom_nodes (a manual clone beside a Manager install).
Only the first copy ComfyUI imports is used: a second one registering the same routes would
stop ComfyUI from starting, and its nodes and web extension would shadow the first's. The second
copy serves nothing and names itself in the log.
"""

import logging
import sys
from pathlib import Path

PACK_ROOT = Path(__file__).absolute().parent  # as custom_nodes names it, links not followed
LOG = logging.getLogger("comfyui_flux2_flex")


def _copy_in_use() -> str | None:
    """The folder of a copy of this pack that ComfyUI already loaded, if any."""
    this = sys.modules.get(__name__)
    for module in list(sys.modules.values()):
        root = getattr(module, "FLUX2_FLEX_ROOT_IN_USE", None)
        if module is not this and isinstance(root, str):
            return root
    return None


_IN_USE_ELSEWHERE = _copy_in_use()
if _IN_USE_ELSEWHERE is None:
    FLUX2_FLEX_ROOT_IN_USE = str(PACK_ROOT)  # marks this copy as the one ComfyUI uses
    WEB_DIRECTORY = "./web"
else:
    WEB_DIRECTORY = None  # ComfyUI skips a pack whose WEB_DIRECTORY is None


def _no_nodes_extension():
    """What a second copy hands ComfyUI: no nodes, so the first copy's stand. Imports nothing of
    its own, so it works even where the first copy's dependencies are missing."""
    from comfy_api.latest import ComfyExtension

    class NoNodes(ComfyExtension):
        async def get_node_list(self) -> list:
            return []

    return NoNodes()


async def comfy_entrypoint():
    """Called by ComfyUI (V3 API): configure the engine, add the key routes, example inputs and the
    unload hook; hand over the nodes."""
    if _IN_USE_ELSEWHERE is not None:
        LOG.warning("FLUX.2 [flex] nodes: a second copy of the pack at %s was not loaded; the copy at %s is in "
                    "use. Remove one of them from custom_nodes.", PACK_ROOT, _IN_USE_ELSEWHERE)
        return _no_nodes_extension()
    from .nodes.comfy.extension import FluxFlexExtension
    from .nodes.comfy.server import (
        configure_engine, free_local_pipeline_on_unload, install_example_inputs, register_routes,
    )
    from .nodes.comfy.recover_node import register_tasks_route
    from .nodes.comfy.validation import register_validation

    configure_engine()
    register_routes()
    register_validation()
    register_tasks_route()
    install_example_inputs()
    free_local_pipeline_on_unload()
    return FluxFlexExtension()
