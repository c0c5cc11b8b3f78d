"""What a run starts from and what it hands back: the prepared request (validated against the
provider, inputs shrunk to its cap, priced) and the finished result, with the hooks and settings
a run takes.

Apart from the runner (runner.py re-exports all of it): a run answered from the result cache
prepares its request and receives a result, but polls nothing, journals nothing and decodes
nothing into arrays, so loading this module loads none of that machinery, numpy included.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Callable

from .pricing import CostEstimate, estimate
from .request import FlexRequest, InputImage, downscaled_size

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from .providers.base import Provider
    from .providers.tasks import SubmittedTask

ProgressCallback = Callable[[float | None, str], None]
CancelCheck = Callable[[], bool]


@dataclass(frozen=True)
class RunSettings:
    """How long to wait for each phase; all in seconds."""

    submit_retry_seconds: float = 120.0  # 429 on submit: wait for a free slot this long
    task_timeout_seconds: float = 600.0  # from submit to a finished image
    connect_retries: int = 2
    poll_request_seconds: float = 30.0  # one poll that takes longer counts as a failed poll
    download_seconds: float = 180.0  # the whole download of one result, however slowly it trickles
    overload_wait_seconds: float = 5.0  # the first wait after an "overloaded" refusal; doubled each time


@dataclass(frozen=True)
class RunHooks:
    """Callbacks from a caller (a node's progress bar, ComfyUI's interrupt flag, the CLI)."""

    on_progress: ProgressCallback | None = None
    is_cancelled: CancelCheck | None = None
    on_submitted: Callable[[SubmittedTask], None] | None = None

    def progress(self, fraction: float | None, status: str) -> None:
        if self.on_progress is not None:
            self.on_progress(fraction, status)

    def cancelled(self) -> bool:
        return bool(self.is_cancelled and self.is_cancelled())


@dataclass(frozen=True)
class PreparedRequest:
    """A validated request, inputs shrunk to the provider's caps, its price, and what changed."""

    request: FlexRequest
    estimate: CostEstimate
    notes: tuple[str, ...]


@dataclass(frozen=True)
class GenerationResult:
    """One finished image with what the provider reported beside our estimate.

    `image` holds the pixels as an array, or, for a result-cache hit, the image decoded from the
    stored PNG: `pixels` makes the array the first time a caller reads it (a node does), while the
    command line saves `picture()` as it is, so a cache hit there never loads numpy. A hit keeps
    the stored file too (`png_file`), which is what saving the image as a PNG would write."""

    image: np.ndarray | Image.Image
    provider: str
    task_id: str
    seed: int | None
    estimate: CostEstimate
    reported_cost: float | None
    input_mp: float | None
    output_mp: float | None
    notes: tuple[str, ...] = field(default_factory=tuple)
    seconds: float = 0.0
    from_cache: bool = False
    png_file: bytes | None = None

    def report(self) -> str:
        """A short, human summary: what it cost, how large, which task."""
        cost = self.estimate.summary()
        if self.from_cache:
            cost = f"from the result cache: no request, no cost (first run: {cost})"
        elif self.reported_cost is not None:
            cost += f"; {self.provider} reported {self.reported_cost:g} {self.estimate.unit}"
        lines = [
            f"{self.provider} task {self.task_id}, seed {self.seed if self.seed is not None else 'random'}",
            cost,
        ]
        if self.output_mp is not None:
            lines.append(f"megapixels: {self.input_mp or 0:g} in, {self.output_mp:g} out")
        lines.extend(self.notes)
        return "\n".join(lines)

    @cached_property
    def pixels(self) -> np.ndarray:
        """[H, W, 3] uint8 RGB."""
        import numpy as np

        return np.asarray(self.image)

    def picture(self) -> Image.Image:
        """The image as Pillow saves it: the stored one as read, else made from the array."""
        from PIL import Image

        return self.image if isinstance(self.image, Image.Image) else Image.fromarray(self.image)


def prepare(request: FlexRequest, provider: Provider, *, count: int = 1) -> PreparedRequest:
    """Validate against the provider, downscale oversized inputs (saying so) and price it."""
    notes: list[str] = []
    shrunk: list[InputImage] = []
    for index, image in enumerate(request.images, start=1):
        within, note = _within_cap(image, provider.limits.max_input_pixels, label=f"input image {index}")
        shrunk.append(within)
        if note:
            notes.append(note)
    prepared = replace(request, images=tuple(shrunk))
    provider.validate(prepared)
    notes.extend(provider.notes_for(prepared))
    return PreparedRequest(prepared, estimate(prepared, provider.name, count=count), tuple(notes))


def _within_cap(image: InputImage, max_pixels: int, *, label: str) -> tuple[InputImage, str | None]:
    """The image, or its copy shrunk under the provider's cap and a note saying so. The copy is made
    once per image (every batch item gets the same one), so it is encoded for upload once too."""
    if downscaled_size(image.width, image.height, max_pixels) == (image.width, image.height):
        return image, None

    def shrink() -> tuple[InputImage, str | None]:
        from .images import downscale_to_max_pixels  # with numpy: only an image over the cap needs it

        result = downscale_to_max_pixels(image.pixels, max_pixels, label=label)
        return InputImage(result.pixels), result.note

    return image.derived(("downscaled", max_pixels, label), shrink)
