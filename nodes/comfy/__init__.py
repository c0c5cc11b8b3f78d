"""The ComfyUI layer: every module that imports ComfyUI (node schemas, server routes, run hooks).

Nothing outside this folder imports it; it stands on the node logic (`..logic`) and the engine."""
