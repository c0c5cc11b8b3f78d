"""A digest of everything that decides a request's image: the name both the result cache and the
journal of paid tasks file it under, so a rerun finds its stored image or its paid task.

Every input pixel counts (a sampled digest could answer one image with another's result), so the
images are most of the work: 8 references of 4 MP are 100 MB. Each image is therefore hashed once,
however many batch items, cache lookups and journal records use it (the digest is remembered for as
long as its InputImage lives: InputImage is frozen, its pixels are not to be changed), straight
from the array's memory without a copy, and the images of one request in parallel threads
(hashlib releases the GIL on large buffers). SHA-256 is the fastest of hashlib's digests on
processors with SHA extensions, where it runs at about 2 GB/s.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import weakref
from concurrent.futures import Future, ThreadPoolExecutor

from .request import LOSSLESS_UPLOAD_FORMAT, FlexRequest, InputImage

MODEL = "flux-2-flex"
FORMAT_VERSION = 2  # 2: a digest per image, combined (1 hashed all pixels in one stream)

_digests: dict[int, Future[bytes]] = {}  # id(InputImage) -> its pixels' digest (or its hashing), while it lives
_digests_lock = threading.Lock()


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
    for image_digest in image_digests(request.images):
        digest.update(image_digest)
    return digest.hexdigest()


def image_digests(images: tuple[InputImage, ...]) -> list[bytes]:
    """The digest of each image's shape and pixels. Images nobody has hashed yet are hashed here,
    in parallel; one that another thread (a batch item beside this one) is hashing is waited for."""
    mine: list[tuple[InputImage, Future[bytes]]] = []
    with _digests_lock:
        futures = []
        for image in images:
            if id(image) not in _digests:
                _digests[id(image)] = Future()
                weakref.finalize(image, _forget, id(image))
                mine.append((image, _digests[id(image)]))
            futures.append(_digests[id(image)])
    if len(mine) > 1:
        with ThreadPoolExecutor(max_workers=min(len(mine), os.cpu_count() or 1),
                                thread_name_prefix="flux-flex-hash") as pool:
            list(pool.map(_settle, mine))
    elif mine:
        _settle(mine[0])
    return [future.result() for future in futures]


def _settle(job: tuple[InputImage, Future[bytes]]) -> None:
    image, future = job
    try:
        future.set_result(_hash_pixels(image))
    except BaseException as error:  # waiting threads see it too; the next request tries again
        _forget(id(image))
        future.set_exception(error)
        raise


def _hash_pixels(image: InputImage) -> bytes:
    pixels = image.pixels
    digest = hashlib.sha256(f"{pixels.shape}{pixels.dtype}".encode())
    # The array's own memory when it is contiguous (InputImage's are); a copy only otherwise.
    digest.update(memoryview(pixels if pixels.flags.c_contiguous else pixels.copy(order="C")).cast("B"))
    return digest.digest()


def _forget(key: int) -> None:
    with _digests_lock:
        _digests.pop(key, None)
