"""A digest of everything that decides a request's image: the name both the result cache and the
journal of paid tasks file it under, so a rerun finds its stored image or its paid task."""

from __future__ import annotations

import hashlib
import json

import numpy as np

from .request import LOSSLESS_UPLOAD_FORMAT, FlexRequest

MODEL = "flux-2-flex"
FORMAT_VERSION = 1


def request_fingerprint(provider: str, request: FlexRequest) -> str:
    """Provider, model, every setting (the seed too, None when random) and every input pixel.

    The upload format counts only where it changes what the provider receives: lossy uploads of
    input images. PNG is lossless at any zlib level, and without images nothing is uploaded, so
    those requests keep the names they had before the setting existed.
    """
    digest = hashlib.sha256()
    settings = {**request.settings(), "input_images": None}
    if not request.images or request.upload_format == LOSSLESS_UPLOAD_FORMAT:
        del settings["upload_format"]
    digest.update(json.dumps({"v": FORMAT_VERSION, "provider": provider, "model": MODEL, **settings},
                             sort_keys=True).encode())
    for image in request.images:
        digest.update(str(image.pixels.shape).encode())
        digest.update(np.ascontiguousarray(image.pixels).tobytes())
    return digest.hexdigest()
