"""What the nodes do, as plain functions over torch tensors: settings, checks, requests, prices,
references, key storage. Imports the engine, never ComfyUI, so tests run it without ComfyUI."""
