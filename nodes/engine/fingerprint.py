"""A digest of everything that decides a request's image: the name both the result cache and the
journal of paid tasks file it under, so a rerun finds its stored image or its paid task.

The names never change between versions of the pack: a cache entry or an unfinished paid task
recorded before an upgrade must still be found after it, or the rerun would pay again. So every
input pixel is streamed into the one digest in the same order as always, only now straight from
the array's memory (or a file's decoding, in strips) instead of through a copy: 8 references of
4 MP (100 MB) take about 50 ms on a processor with SHA extensions, where SHA-256 runs at about 2 GB/s.
"""

from __future__ import annotations

import hashlib
import json

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
        digest.update(str(image.shape).encode())
        for chunk in image.pixel_bytes():
            digest.update(chunk)
    return digest.hexdigest()

