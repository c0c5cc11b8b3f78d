"""ComfyUI entry point of the FLUX.2 [flex] node pack.

ComfyUI imports this file as a package named after the folder it was cloned into, and owns a
top-level module called `nodes`; everything here is therefore imported relatively. Importing the
package outside ComfyUI (tests, the CLI) loads nothing from ComfyUI.
"""

WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    """Called by ComfyUI (V3 API): configure the engine, add the key routes, example inputs and the
    unload hook; hand over the nodes."""
    from .nodes.comfy_nodes import FluxFlexExtension
    from .nodes.comfy_server import (
        configure_engine, free_local_pipeline_on_unload, install_example_inputs, register_routes,
    )

    configure_engine()
    register_routes()
    install_example_inputs()
    free_local_pipeline_on_unload()
    return FluxFlexExtension()
