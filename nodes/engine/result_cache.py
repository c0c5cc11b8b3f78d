"""A persistent result cache: the same request twice costs once, also after a restart.

The key covers everything that decides the image: provider, model, every setting, the seed and
the exact pixels of every input image. A request without a seed is never cached (the provider
picks a random one, so the same settings are not the same image). Only finished images reach
the cache: a moderated or failed run raises before anything is stored.

Each entry is a PNG plus a JSON of the result's metadata, both written to a temporary file and
renamed into place, the JSON last: an entry without its JSON, or whose PNG does not match the
size the JSON records, is treated as absent and removed, so a crash never yields a corrupt hit.
Least recently used entries are evicted once the folder grows past its size cap.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import threading
from dataclasses import replace
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngImageFile

from .files import skip_unreadable, write_atomically
from .fingerprint import request_fingerprint
from .prepared import GenerationResult
from .pricing import CostEstimate
from .request import FlexRequest

DEFAULT_MAX_BYTES = 2 * 1024**3


def cache_key(provider: str, request: FlexRequest, fingerprint: str | None = None) -> str | None:
    """A digest of everything that decides the image, or None when the seed is random.

    `fingerprint`, the request's own when the caller has it already, spares hashing every input
    pixel again (most of a cache hit's time with large references)."""
    if request.seed is None:
        return None
    return fingerprint or request_fingerprint(provider, request)


class ResultCache:
    """Finished images on disk, keyed by `cache_key`, capped at `max_bytes` (LRU eviction)."""

    def __init__(self, folder: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    def get(self, key: str) -> GenerationResult | None:
        """The stored result, or None; an entry that cannot be read is removed with a warning."""
        image_path, meta_path = self._paths(key)
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            data = image_path.read_bytes()
            if len(data) != meta["png_bytes"]:
                raise ValueError("image and metadata disagree")
            # Read as the PNG it was stored as: Image.open of bytes would load five format plugins to guess.
            with PngImageFile(io.BytesIO(data)) as stored:
                stored.load()  # decoded now, so a broken PNG is a miss; an array only if asked
            picture = stored if stored.mode == "RGB" else stored.convert("RGB")
            result = _result_from_json(meta, picture, png_file=data if picture is stored else None)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError, SyntaxError) as error:  # Syntax: not a PNG
            skip_unreadable(meta_path, "result cache entry", error)
            self._remove(key)
            return None
        os.utime(meta_path)  # marks it recently used for eviction
        return result

    def put(self, key: str, result: GenerationResult) -> None:
        """Store the image as the PNG that saving it to a .png file writes (Pillow's defaults): a
        hit then hands that file over as it is, as the paid run wrote it, with no encoding."""
        buffer = io.BytesIO()
        result.picture().save(buffer, format="PNG")
        data = buffer.getvalue()
        meta = {**_result_to_json(result), "png_bytes": len(data)}
        image_path, meta_path = self._paths(key)
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_atomically(image_path, data)
            write_atomically(meta_path, json.dumps(meta).encode())
            self._evict()

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.folder / f"{key}.png", self.folder / f"{key}.json"

    def _remove(self, key: str) -> None:
        for path in self._paths(key):
            path.unlink(missing_ok=True)

    def _evict(self) -> None:
        entries = []
        for meta_path in self.folder.glob("*.json"):
            image_path = meta_path.with_suffix(".png")
            try:
                size = meta_path.stat().st_size + image_path.stat().st_size
                entries.append((meta_path.stat().st_mtime, size, meta_path.stem))
            except FileNotFoundError:
                continue
        total = sum(size for _, size, _ in entries)
        for _, size, key in sorted(entries):
            if total <= self.max_bytes:
                break
            self._remove(key)
            total -= size


def _result_to_json(result: GenerationResult) -> dict:
    fields = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)
              if f.name not in ("image", "estimate", "png_file")}
    return {**fields, "notes": list(result.notes), "estimate": dataclasses.asdict(result.estimate)}


def _result_from_json(meta: dict, picture: Image.Image, *, png_file: bytes | None) -> GenerationResult:
    """The stored result, `png_file` the stored file where it holds `picture` as it is; raises
    KeyError, TypeError or ValueError for an entry that is not one."""
    estimate = meta.pop("estimate")
    estimate["breakdown"] = tuple(estimate["breakdown"])
    meta.pop("png_bytes")
    meta["notes"] = tuple(meta["notes"])
    result = replace(GenerationResult(image=picture, estimate=CostEstimate(**estimate), **meta), from_cache=True,
                     png_file=png_file)
    result.report()  # every field a reader uses is of its kind
    return result
