"""ComfyUI entry point of the FLUX.2 [flex] node pack.

ComfyUI imports this file as a package named after the folder it was cloned into, and owns a
top-level module called `nodes`; everything here is therefore imported relatively. Importing the
package outside ComfyUI (tests, the CLI) loads nothing from ComfyUI.
"""

WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    """Called by ComfyUI (V3 API): set up keys, example inputs and local models; hand over the nodes."""
    from .nodes.comfy_nodes import FluxFlexExtension
    from .nodes.comfy_server import connect_local_backend, install_example_inputs, register_routes

    register_routes()
    install_example_inputs()
    connect_local_backend()
    return FluxFlexExtension()
