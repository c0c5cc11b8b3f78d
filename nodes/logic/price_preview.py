"""The price a node shows before it runs, from its widgets and what the browser knows of its images.

The web extension cannot see pixels, only which sockets are wired and, where an image comes from
a LoadImage node, which file it is (the server reads that file's size). So a preview is exact
when every image's size is known and a range otherwise: an unknown image counts as at least
1 MP and at most the provider's cap. The figures come from the engine's pricing table and the
same size rules as a run (Edit's size from its input, reference downscaling), so a known-size
preview equals the price the run then reports.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping

from ..engine.errors import FluxFlexError
from ..engine.pricing import CostEstimate, PerMegapixelPrice, UnknownPrice, estimate_from_sizes, price_for
from ..engine.providers import make_provider
from ..engine.request import MEGAPIXEL, downscaled_size
from .node_runs import NodeSettings, edit_output_size
from .references import REFERENCE_LIMITS

SMALLEST_BILLED = (1024, 1024)  # any image up to 1 MP is billed as 1 MP
LARGEST_INPUT = (2048, 2048)  # inputs are downscaled to at most 4 MP before sending


@dataclass(frozen=True)
class SocketImages:
    """What is known before a run about the images on one input socket.

    `sizes` are frames whose size is known (files picked in LoadImage nodes); `unknown` counts
    sources whose frames are only known when the graph runs (each gives at least one frame).
    """

    sizes: tuple[tuple[int, int], ...] = ()
    unknown: int = 0


@dataclass(frozen=True)
class PricePreview:
    """A short text for the node (`$0.050`, `~$0.100-$0.450`, `price unknown`) and its explanation."""

    text: str
    detail: str
    usd_low: float | None = None
    usd_high: float | None = None
    problem: bool = False  # the settings would be refused at queue time: `detail` says why


def preview_price(
    settings: NodeSettings,
    *,
    edit_image: SocketImages | None = None,
    references: SocketImages | None = None,
    match_input_size: bool = True,
    local: bool = False,
) -> PricePreview:
    """The price of what the node would send with these settings, exact where sizes are known."""
    if local:
        return PricePreview("free (local run)", "a local model is wired in: the run uses your own hardware",
                            0.0, 0.0)
    try:
        provider = make_provider(settings.provider)
        provider.validate(settings.base_request())
        if edit_image is not None or references is not None:  # images will be uploaded in this format
            provider.check_upload_format(settings.upload_format)
    except FluxFlexError as error:
        return PricePreview("check settings", str(error), problem=True)
    price = price_for(provider.name)
    if isinstance(price, UnknownPrice):
        return PricePreview("price unknown", estimate_from_sizes(price, (0, 0), ()).as_text())
    limit = provider.limits.max_input_pixels
    low = _extreme(settings, price, edit_image, references, match_input_size, limit, largest=False)
    high = _extreme(settings, price, edit_image, references, match_input_size, limit, largest=True)
    note = provider.price_line_note(settings.base_request())  # the provider will not make exactly this
    said = f" ({note})" if note else ""
    notes = "".join(f"\n{line}" for line in provider.notes_for(settings.base_request())) if note else ""
    if low.usd == high.usd:
        return PricePreview(f"${low.usd:.3f}{said}", low.as_text() + notes, low.usd, high.usd)
    detail = (f"between ${low.usd:.3f} and ${high.usd:.3f}: some input images are only known when the graph runs "
              f"(each counts from 1 to {limit // MEGAPIXEL} MP); Cost Estimate and the run's report give the exact "
              "figure")
    return PricePreview(f"~${low.usd:.3f}-${high.usd:.3f}{said}", detail + notes, low.usd, high.usd)


def _extreme(settings: NodeSettings, price: PerMegapixelPrice, edit_image: SocketImages | None,
             references: SocketImages | None, match_input_size: bool, limit: int, *, largest: bool) -> CostEstimate:
    """The estimate with every unknown image at its cheapest (1 MP) or dearest (the cap) size."""
    unknown_size = LARGEST_INPUT if largest else SMALLEST_BILLED
    inputs: list[tuple[int, int]] = []
    output = settings.output_size()
    if edit_image is not None:
        frame = edit_image.sizes[0] if edit_image.sizes else unknown_size
        output = edit_output_size(settings, *frame, match_input_size).size
        inputs.append(downscaled_size(*frame, limit))
    if references is not None:
        inputs.extend(downscaled_size(*downscaled_size(w, h, REFERENCE_LIMITS.max_input_pixels), limit)
                      for w, h in references.sizes)
        if references.unknown:
            room = REFERENCE_LIMITS.max_images - len(references.sizes)
            count = room if largest else min(room, references.unknown)
            inputs.extend([unknown_size] * max(0, count))
    return estimate_from_sizes(price, output, inputs, count=settings.batch_size)


ImageSizeLookup = Callable[[str], "tuple[int, int] | None"]


def preview_for_browser(body: Mapping[str, Any], image_size: ImageSizeLookup) -> dict[str, Any]:
    """Answer the web extension's question about one node: its widget values and wired images in,
    the preview as JSON out. `image_size` gives the size of an image file a LoadImage node picked
    (None when it cannot be read: that image then counts as unknown)."""
    widgets = body.get("widgets")
    if not isinstance(widgets, Mapping):
        raise ValueError("widgets must be an object")
    preview = preview_price(
        NodeSettings.from_widgets(widgets),
        edit_image=_socket_images(body.get("image"), image_size),
        references=_socket_images(body.get("references"), image_size),
        match_input_size=bool(widgets.get("match_input_size", True)),
        local=bool(body.get("local", False)),
    )
    return asdict(preview)


def _socket_images(socket: object, image_size: ImageSizeLookup) -> SocketImages | None:
    """{"files": [names], "unknown": n} from the browser; None when the socket is not wired."""
    if not isinstance(socket, Mapping):
        return None
    sizes = [image_size(str(name)) for name in socket.get("files", [])]
    known = tuple(size for size in sizes if size is not None)
    return SocketImages(known, int(socket.get("unknown", 0)) + len(sizes) - len(known))
