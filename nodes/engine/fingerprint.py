"""A digest of everything that decides a request's image: the name both the result cache and the
journal of paid tasks file it under, so a rerun finds its stored image or its paid task."""

from __future__ import annotations

import hashlib
import json

import numpy as np

from .request import FlexRequest

MODEL = "flux-2-flex"
FORMAT_VERSION = 1


def request_fingerprint(provider: str, request: FlexRequest) -> str:
    """Provider, model, every setting (the seed too, None when random) and every input pixel."""
    digest = hashlib.sha256()
    settings = {**request.settings(), "input_images": None}
    digest.update(json.dumps({"v": FORMAT_VERSION, "provider": provider, "model": MODEL, **settings},
                             sort_keys=True).encode())
    for image in request.images:
        digest.update(str(image.pixels.shape).encode())
        digest.update(np.ascontiguousarray(image.pixels).tobytes())
    return digest.hexdigest()
