"""The FLUX.2 [flex] request: every field, its range and default, in one place.

Nodes, tooltips, the CLI, the web extension and the tests read ranges and defaults from the
specs below, so a limit is written once. Validation runs before any network traffic and names
the field, the value and the allowed range. Size adjustments (rounding to 16, capping the
pixel count) are explicit: `fit_size` returns notes that the caller shows to the user.
"""

from __future__ import annotations

import math
import numbers
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable, Hashable, Iterator, TypeVar

from .errors import InvalidRequestError

if TYPE_CHECKING:  # numpy and Pillow only name the pixels' types here: a request without images never loads them
    import numpy as np
    from PIL import Image

MEGAPIXEL = 1024 * 1024
SIZE_MULTIPLE = 16
MIN_INPUT_SIDE = SIZE_MULTIPLE  # smaller than one of the model's 16-pixel blocks: nothing to see, still billed
MAX_OUTPUT_PIXELS = 4 * MEGAPIXEL
OUTPUT_FORMATS: tuple[str, ...] = ("png", "jpeg", "webp")


@dataclass(frozen=True)
class NumberSpec:
    """Range, default and help text of one numeric request field."""

    name: str
    minimum: float
    maximum: float
    default: float
    step: float
    help: str

    def tooltip(self) -> str:
        return f"{self.help} Range {_fmt(self.minimum)} to {_fmt(self.maximum)}, default {_fmt(self.default)}."


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


WIDTH = NumberSpec(
    "width", 64, 4096, 1024, SIZE_MULTIPLE,
    "Output width in pixels, a multiple of 16; width x height at most 4 MP (4,194,304 px).",
)
HEIGHT = NumberSpec(
    "height", 64, 4096, 1024, SIZE_MULTIPLE,
    "Output height in pixels, a multiple of 16; width x height at most 4 MP (4,194,304 px).",
)
STEPS = NumberSpec(
    "steps", 1, 50, 50, 1,
    "Denoising steps: more steps give finer detail and take longer; the price does not change.",
)
GUIDANCE = NumberSpec(
    "guidance", 1.5, 10.0, 5.0, 0.1,
    "How strictly the image follows the prompt: higher adheres more, lower looks more natural.",
)
SAFETY_TOLERANCE = NumberSpec(
    "safety_tolerance", 0, 5, 2, 1,
    "Moderation strictness for inputs and output: 0 is the strictest, 5 the most permissive.",
)
SEED = NumberSpec(  # the widest range: ComfyUI's own nodes (RandomNoise) and its FLUX.2 templates take 2^64-1
    "seed", 0, 2**64 - 1, 0, 1,
    "Seed for reproducibility: the same seed and settings give the same image (with prompt upsampling off). "
    "Remote providers take 0 to 4294967295; a Local Model (ComfyUI) takes the whole range.",
)
# What a remote provider is sent: no provider documents a range (BFL's API reference gives the seed as an
# integer, nothing more), so the pack keeps to 32 bits, which every API it speaks to takes.
REMOTE_SEED = replace(SEED, maximum=2**32 - 1)
NUMBER_SPECS: dict[str, NumberSpec] = {s.name: s for s in (WIDTH, HEIGHT, STEPS, GUIDANCE, SAFETY_TOLERANCE, SEED)}

PROMPT_HELP = "What to draw or how to edit. Text in quotes is rendered as typography."
PROMPT_UPSAMPLING_DEFAULT = True
PROMPT_UPSAMPLING_HELP = (
    "Let the provider rewrite the prompt with more detail before generating (default on). "
    "The rewrite varies between runs, so the same seed no longer reproduces the same image: "
    "turn it off for reproducible results."
)
OUTPUT_FORMAT_DEFAULT = "png"
OUTPUT_FORMAT_HELP = (
    "Format the provider encodes the result in (png, jpeg, webp; default png). The image is decoded "
    "into ComfyUI either way: png is lossless, jpeg and webp download faster."
)
UPLOAD_FORMATS: tuple[str, ...] = ("png", "jpeg", "webp")
LOSSLESS_UPLOAD_FORMAT = "png"
UPLOAD_FORMAT_DEFAULT = LOSSLESS_UPLOAD_FORMAT  # never lossy unless the user chooses it
UPLOAD_FORMAT_HELP = (
    "How input images (the image to edit, references) are sent to the provider. png (default) is lossless: the "
    "provider sees exactly your pixels, but a 4 MP photo makes an upload of about 10 MB that takes about half a "
    "second to encode. jpeg and webp (quality 95) are lossy: uploads about 4 times smaller, at the cost of slight "
    "softening of fine detail and small text; jpeg also encodes about 20 times faster, webp no faster than png. "
    "Not every provider takes jpeg or webp: a choice it does not take is refused before anything is sent."
)
MAX_INPUT_IMAGES = 8  # BFL's OpenAPI schema has input_image .. input_image_8
T = TypeVar("T")


FINGERPRINT_STRIP_ROWS = 64  # rows of a file's pixels hashed at a time: a strip, never a second whole copy


class PixelSource(ABC):
    """Pixels kept outside memory and decoded each time they are needed (a reference file the
    command line read): eight 4 MP references held as arrays cost 96 MB before a byte is sent, and
    a decoded copy lives only while one is fingerprinted or encoded."""

    @property
    @abstractmethod
    def size(self) -> tuple[int, int]:
        """(width, height) of the upright image, known without decoding it again."""

    @abstractmethod
    def picture(self) -> Image.Image:
        """The pixels decoded anew as an upright RGB Pillow image, the caller's to let go."""


@dataclass(frozen=True)
class InputImage:
    """One image sent with the request (the image to edit or a reference): uint8 RGB pixels held
    as an array (what a node gets from ComfyUI), or a PixelSource that decodes them on demand."""

    source: np.ndarray | PixelSource  # an array is [H, W, 3] uint8, C-contiguous
    # What is computed from the pixels (the upload encoding per format, a downscaled copy), kept
    # with the image: seeded_requests copies requests, not images, so every batch item and every
    # retry that sends this image finds it made already.
    _derived: dict[Hashable, object] = field(default_factory=dict, init=False, repr=False, compare=False)
    _derived_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def derived(self, key: Hashable, make: Callable[[], T]) -> T:
        """`make()` the first time `key` is asked for, the stored value after that. Thread-safe:
        a batch item asking while another computes waits for that result instead of repeating it."""
        with self._derived_lock:
            if key not in self._derived:
                self._derived[key] = make()
            return self._derived[key]  # type: ignore[return-value]

    @property
    def in_memory(self) -> bool:
        return not isinstance(self.source, PixelSource)

    @property
    def width(self) -> int:
        return self.source.size[0] if isinstance(self.source, PixelSource) else int(self.source.shape[1])

    @property
    def height(self) -> int:
        return self.source.size[1] if isinstance(self.source, PixelSource) else int(self.source.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        """The pixel array's shape, (height, width, 3), decoded or not."""
        return (self.height, self.width, 3) if isinstance(self.source, PixelSource) else tuple(self.source.shape)

    @property
    def pixels(self) -> np.ndarray:
        """The pixels as an array: the one held, or a fresh decoding the caller owns."""
        if isinstance(self.source, PixelSource):
            import numpy as np

            return np.asarray(self.source.picture())
        return self.source

    def picture(self) -> Image.Image:
        """The pixels as an RGB Pillow image (what encoders and pipelines take)."""
        if isinstance(self.source, PixelSource):
            return self.source.picture()
        from PIL import Image

        return Image.fromarray(self.source)

    def pixel_bytes(self) -> Iterator[memoryview | bytes]:
        """Every pixel's R, G, B bytes, row after row: the array's own memory when it is contiguous
        (a copy only otherwise), a decoded file in strips."""
        import numpy as np  # here, not at load: a request without images (a cache hit) never needs it

        if not isinstance(self.source, PixelSource):
            yield memoryview(np.ascontiguousarray(self.source)).cast("B")
            return
        picture = self.source.picture()
        for top in range(0, picture.height, FINGERPRINT_STRIP_ROWS):
            yield picture.crop((0, top, picture.width, min(top + FINGERPRINT_STRIP_ROWS, picture.height))).tobytes()


@dataclass(frozen=True)
class FlexRequest:
    """A FLUX.2 [flex] request as the user set it, independent of provider.

    width/height of None mean "follow the first input image" (BFL's auto size); a request
    without input images must give both.
    """

    prompt: str
    width: int | None = int(WIDTH.default)
    height: int | None = int(HEIGHT.default)
    steps: int = int(STEPS.default)
    guidance: float = GUIDANCE.default
    seed: int | None = None
    safety_tolerance: int = int(SAFETY_TOLERANCE.default)
    output_format: str = OUTPUT_FORMAT_DEFAULT
    prompt_upsampling: bool = PROMPT_UPSAMPLING_DEFAULT
    images: tuple[InputImage, ...] = field(default_factory=tuple)
    upload_format: str = UPLOAD_FORMAT_DEFAULT

    def with_seed(self, seed: int | None) -> "FlexRequest":
        return replace(self, seed=seed)

    def settings(self) -> dict[str, object]:
        """Every setting except the images: what a dry run prints and what logs may show."""
        return {
            "prompt": self.prompt,
            "width": self.width,
            "height": self.height,
            "steps": self.steps,
            "guidance": self.guidance,
            "seed": self.seed,
            "safety_tolerance": self.safety_tolerance,
            "output_format": self.output_format,
            "prompt_upsampling": self.prompt_upsampling,
            "input_images": [f"{img.width}x{img.height}" for img in self.images],
            "upload_format": self.upload_format,
        }

    def output_size(self) -> tuple[int, int]:
        """The size the output will have: the explicit one or, when automatic, the first image's."""
        if self.width is not None and self.height is not None:
            return self.width, self.height
        first = self.images[0]
        return fit_size(first.width, first.height).size


def validate_request(request: FlexRequest, *, max_images: int = MAX_INPUT_IMAGES,
                     seed: NumberSpec = REMOTE_SEED) -> FlexRequest:
    """Raise InvalidRequestError for the first field outside its range; return the request. `seed`:
    the seed range of where it runs (remote providers', unless a local path takes more)."""
    if not isinstance(request.prompt, str) or not request.prompt.strip():
        raise InvalidRequestError("prompt", request.prompt, "a non-empty text is required")
    _check_integer(STEPS, request.steps)
    _check_number(GUIDANCE, request.guidance)
    _check_integer(SAFETY_TOLERANCE, request.safety_tolerance)
    if request.seed is not None:
        _check_integer(seed, request.seed)
    if request.output_format not in OUTPUT_FORMATS:
        raise InvalidRequestError("output_format", request.output_format, f"one of {', '.join(OUTPUT_FORMATS)}")
    if request.upload_format not in UPLOAD_FORMATS:
        raise InvalidRequestError("upload_format", request.upload_format, f"one of {', '.join(UPLOAD_FORMATS)}")
    if not isinstance(request.prompt_upsampling, bool):
        raise InvalidRequestError("prompt_upsampling", request.prompt_upsampling, "true or false")
    if len(request.images) > max_images:
        raise InvalidRequestError(
            "input images", len(request.images), f"at most {max_images} images (edit image plus references)"
        )
    for index, image in enumerate(request.images, start=1):
        if min(image.width, image.height) < MIN_INPUT_SIDE:
            raise InvalidRequestError(f"input image {index}", f"{image.width}x{image.height}",
                                      f"at least {MIN_INPUT_SIDE} pixels on each side")
    _check_size(request)
    return request


def _check_size(request: FlexRequest) -> None:
    if (request.width is None) != (request.height is None):
        raise InvalidRequestError("width/height", (request.width, request.height), "give both or neither")
    if request.width is None:
        if not request.images:
            raise InvalidRequestError("width/height", None, "required when no input image sets the size")
        return
    for spec, value in ((WIDTH, request.width), (HEIGHT, request.height)):
        _check_integer(spec, value)
        if value % SIZE_MULTIPLE:
            below = max(int(spec.minimum), value - value % SIZE_MULTIPLE)
            raise InvalidRequestError(
                spec.name, value, f"a multiple of {SIZE_MULTIPLE} (nearest: {below} or {below + SIZE_MULTIPLE})"
            )
    pixels = request.width * request.height
    if pixels > MAX_OUTPUT_PIXELS:
        raise InvalidRequestError(
            "width x height",
            f"{request.width}x{request.height} = {pixels / MEGAPIXEL:.2f} MP",
            f"at most {MAX_OUTPUT_PIXELS:,} px (4 MP), for example 2048x2048 or 2560x1600",
        )


def _check_integer(spec: NumberSpec, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):  # numpy's integers too
        raise InvalidRequestError(spec.name, value, f"a whole number from {_fmt(spec.minimum)} to {_fmt(spec.maximum)}")
    _check_number(spec, value)


def _check_number(spec: NumberSpec, value: object) -> None:
    allowed = f"from {_fmt(spec.minimum)} to {_fmt(spec.maximum)}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidRequestError(spec.name, value, f"a number {allowed}")
    if not math.isfinite(float(value)) or not spec.minimum <= value <= spec.maximum:
        raise InvalidRequestError(spec.name, value, allowed)


@dataclass(frozen=True)
class FittedSize:
    """A valid output size derived from an arbitrary one, with what was changed and why."""

    width: int
    height: int
    notes: tuple[str, ...]

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height


def fit_size(width: int, height: int, *, max_pixels: int = MAX_OUTPUT_PIXELS) -> FittedSize:
    """Scale (keeping the aspect) under max_pixels and round each side to a multiple of 16.

    Used where the size comes from an image rather than from the user (Edit's default size,
    presets), so the result is always valid and every change is reported.
    """
    notes: list[str] = []
    w, h = float(width), float(height)
    if w * h > max_pixels:
        scale = math.sqrt(max_pixels / (w * h))
        w, h = w * scale, h * scale
        notes.append(f"{width}x{height} exceeds {max_pixels / MEGAPIXEL:g} MP: scaled down")
    fw = _round_to_multiple(w, int(WIDTH.minimum))
    fh = _round_to_multiple(h, int(HEIGHT.minimum))
    while fw * fh > max_pixels:  # rounding up may cross the cap by a few rows
        if fw >= fh:
            fw -= SIZE_MULTIPLE
        else:
            fh -= SIZE_MULTIPLE
    if (fw, fh) != (width, height):
        notes.append(f"size {width}x{height} adjusted to {fw}x{fh} (multiples of {SIZE_MULTIPLE})")
    return FittedSize(fw, fh, tuple(notes))


def downscaled_size(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """The size an input image is shrunk to (keeping its aspect) so it has at most max_pixels.

    Inputs are not rounded to 16: only outputs must be multiples of it. Sizes within the limit
    are returned unchanged.
    """
    if width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    return max(1, int(width * scale)), max(1, int(height * scale))


def _round_to_multiple(value: float, minimum: int) -> int:
    return max(minimum, math.floor(value / SIZE_MULTIPLE + 0.5) * SIZE_MULTIPLE)  # half rounds up


ASPECT_PRESETS: dict[str, tuple[int, int]] = {
    "1:1": (1, 1), "4:3": (4, 3), "3:4": (3, 4), "3:2": (3, 2), "2:3": (2, 3),
    "16:9": (16, 9), "9:16": (9, 16), "21:9": (21, 9), "9:21": (9, 21), "4:5": (4, 5), "5:4": (5, 4),
}
MEGAPIXEL_PRESETS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
MEGAPIXEL_CHOICES: tuple[str, ...] = tuple(f"{mp:g}" for mp in MEGAPIXEL_PRESETS)  # how widgets show them


def preset_size(aspect: str, megapixels: float) -> FittedSize:
    """Resolve an aspect ratio and a megapixel target to a valid width and height.

    The result never exceeds the target, so a "1 MP" preset is never billed as 2 MP.
    """
    if aspect not in ASPECT_PRESETS:
        raise InvalidRequestError("aspect_ratio", aspect, f"one of {', '.join(ASPECT_PRESETS)}")
    if megapixels not in MEGAPIXEL_PRESETS:
        raise InvalidRequestError("megapixels", megapixels, f"one of {', '.join(map(str, MEGAPIXEL_PRESETS))}")
    aw, ah = ASPECT_PRESETS[aspect]
    target = int(megapixels * MEGAPIXEL)
    height = math.sqrt(target * ah / aw)
    fitted = fit_size(round(height * aw / ah), round(height), max_pixels=target)
    return FittedSize(fitted.width, fitted.height, ())


def seeded_requests(request: FlexRequest, count: int) -> list[FlexRequest]:
    """`count` copies of `request` with seeds seed, seed+1, ...; a random seed (None) stays random.

    Counting up keeps each image of a batch reproducible on its own: its seed is in its report.
    """
    if request.seed is None:
        return [request] * count
    return [request.with_seed(request.seed + offset) for offset in range(count)]
