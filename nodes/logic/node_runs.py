"""What the nodes do, as plain functions: no ComfyUI import, so tests call them directly.

The ComfyUI classes in ..comfy.node_classes only translate widgets to `NodeSettings`, hand over
ComfyUI's progress bar and interrupt flag as hooks, and wrap the returned values.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Mapping

import torch

from ..engine.backend import Backend, backend_for
from ..engine.batch import BatchError
from ..engine.caps import check_paid_request_cap
from ..engine.errors import FluxFlexError, InvalidRequestError
from ..engine.journal import TaskJournal
from ..engine.keys import key_choice_note
from ..engine.local import LocalModel, LocalOptions
from ..engine.pricing import CostEstimate, estimate
from ..engine.providers import make_provider, provider_class
from ..engine.request import (
    MAX_OUTPUT_PIXELS, SEED, UPLOAD_FORMAT_DEFAULT, FittedSize, FlexRequest, InputImage, fit_size, preset_size,
    seeded_requests, validate_request,
)
from ..engine.result_cache import ResultCache
from ..engine.runner import GenerationResult, RunHooks
from .node_words import ENGLISH_WORDS, Words
from .receipt import batch_total, receipt
from .references import ReferenceSet
from .tensors import arrays_to_tensor, tensor_to_arrays

CUSTOM_SIZE = "custom"
MAX_BATCH = 16
GENERATE_NODE, EDIT_NODE = "FluxFlexGenerate", "FluxFlexEdit"
REFERENCE_BATCH_NODE, COST_ESTIMATE_NODE = "FluxFlexReferenceBatch", "FluxFlexCostEstimate"
LOCAL_MODEL_NODE, NATIVE_MODEL_NODE = "FluxFlexLocalModel", "FluxFlexNativeModel"
RECOVER_NODE = "FluxFlexRecoverTask"
NODE_IDS = (GENERATE_NODE, EDIT_NODE, REFERENCE_BATCH_NODE, COST_ESTIMATE_NODE, LOCAL_MODEL_NODE, NATIVE_MODEL_NODE)


@dataclass(frozen=True)
class LocalChoice:
    """A local FLUX.2 model and how to run it: what the Local Model node hands to Generate and Edit.

    Wiring it in replaces the provider: the run happens on this machine, free of charge.
    """

    model: LocalModel
    options: LocalOptions = LocalOptions()


@dataclass(frozen=True)
class NodeSettings:
    """The widget values Generate, Edit and CostEstimate share."""

    provider: str
    prompt: str
    aspect_ratio: str = CUSTOM_SIZE
    megapixels: float = 1.0
    width: int = 1024
    height: int = 1024
    steps: int = 50
    guidance: float = 5.0
    seed: int = 0
    safety_tolerance: int = 2
    output_format: str = "png"
    prompt_upsampling: bool = True
    batch_size: int = 1
    use_cache: bool = True
    key_name: str = ""  # a stored key's name (personal, client); empty: the provider's default key
    upload_format: str = UPLOAD_FORMAT_DEFAULT

    @classmethod
    def from_widgets(cls, values: Mapping[str, Any]) -> "NodeSettings":
        """Settings from a node's widget values; values not given (linked sockets) keep defaults.

        Keys that are not settings (other inputs, or values a workflow saved for widgets this
        version no longer has) are left out rather than refused.
        """
        known = {f.name for f in fields(cls)}
        chosen = {k: v for k, v in values.items() if k in known and v is not None}
        if "megapixels" in chosen:
            chosen["megapixels"] = float(chosen["megapixels"])
        chosen.setdefault("prompt", "(linked)")
        chosen.setdefault("provider", "bfl")
        return cls(**chosen)

    def output_size(self) -> tuple[int, int]:
        """Width and height from the preset when one is chosen, else from the width/height widgets."""
        if self.aspect_ratio == CUSTOM_SIZE:
            return self.width, self.height
        return preset_size(self.aspect_ratio, self.megapixels).size

    def base_request(self, images: tuple[InputImage, ...] = (), size: tuple[int, int] | None = None) -> FlexRequest:
        width, height = size or self.output_size()
        return FlexRequest(
            prompt=self.prompt, width=width, height=height, steps=self.steps, guidance=self.guidance,
            seed=self.seed, safety_tolerance=self.safety_tolerance, output_format=self.output_format,
            prompt_upsampling=self.prompt_upsampling, images=images, upload_format=self.upload_format,
        )


@dataclass(frozen=True)
class NodeResult:
    images: torch.Tensor
    seed: int
    report: str
    reported_cost: float | None


def check_settings(settings: NodeSettings) -> str | None:
    """The engine's message for the first bad widget value, or None: used at validation time.

    The provider is checked even when a local model will be wired in: its widget is still part of
    the workflow, and a local run validates the request again before it starts.
    """
    try:
        check_settings_before_paying(settings)
    except FluxFlexError as error:
        return str(error)
    return None


def check_settings_before_paying(settings: NodeSettings) -> None:
    """Raise the engine's error for the first bad value. Run again on the values the node really
    received (wired ones included, which queue-time validation sees only as defaults)."""
    if not isinstance(settings.batch_size, int) or not 1 <= settings.batch_size <= MAX_BATCH:
        raise InvalidRequestError("batch_size", settings.batch_size, f"from 1 to {MAX_BATCH}")
    if settings.seed + settings.batch_size - 1 > SEED.maximum:
        raise InvalidRequestError("seed", settings.seed, f"at most {int(SEED.maximum) - settings.batch_size + 1} "
                                  f"with batch_size {settings.batch_size} (seeds count up per image)")
    # The seed's range depends on where it runs (a Local Model (ComfyUI) takes more than a provider):
    # each run checks it before anything is sent (build_requests, the native plan).
    make_provider(settings.provider).validate(settings.base_request().with_seed(None))


def edit_output_size(settings: NodeSettings, width: int, height: int, match_input_size: bool) -> FittedSize:
    """Edit's output size: the input image's (rounded to 16, capped at 4 MP) unless overridden."""
    if not match_input_size:
        return FittedSize(*settings.output_size(), ())
    return fit_size(width, height, max_pixels=MAX_OUTPUT_PIXELS)


def image_size(image: torch.Tensor) -> tuple[int, int]:
    """Width and height of an IMAGE tensor, a single [H, W, C] frame or a [B, H, W, C] batch."""
    height, width = image.shape[-3], image.shape[-2]
    return int(width), int(height)


def build_requests(
    settings: NodeSettings,
    *,
    edit_image: torch.Tensor | None = None,
    references: ReferenceSet | None = None,
    match_input_size: bool = True,
) -> tuple[list[FlexRequest], tuple[str, ...]]:
    """One request per output image: each edit frame x batch_size, seeds counting up from `seed`.

    Counting seeds up (rather than reusing one) makes each image of a batch reproducible alone:
    run it again with its own seed and batch_size 1.
    """
    ref_images = references.images if references else ()
    notes = list(references.notes) if references else []
    if edit_image is None:
        frames: list[tuple[InputImage, ...]] = [()]
        size = settings.output_size()
    else:
        frames = [(InputImage(frame),) for frame in tensor_to_arrays(edit_image, name="image")]
        fitted = edit_output_size(settings, *image_size(edit_image), match_input_size)
        size = fitted.size
        notes.extend(fitted.notes)
    requests = []
    for index, frame in enumerate(frames):
        first = settings.base_request(frame + ref_images, size).with_seed(settings.seed + index * settings.batch_size)
        requests.extend(validate_request(request) for request in seeded_requests(first, settings.batch_size))
    return requests, tuple(notes)


def node_backend(settings: NodeSettings, local: LocalChoice | None = None,
                 journal: TaskJournal | None = None) -> Backend:
    """Where the node's requests run: the wired Local Model, else the provider chosen on the node
    (its paid tasks recorded in `journal`)."""
    if local is not None:
        return backend_for(local.model, local_options=local.options)
    return backend_for(settings.provider, journal=journal, key_choice=settings.key_name)


def run_notes(settings: NodeSettings, backend: Backend) -> tuple[str, ...]:
    """Said once per run: a local model replaced the provider still chosen on the node, or the
    workflow names a key this machine does not have (the default key was used)."""
    if backend.name == settings.provider:
        provider = provider_class(settings.provider)
        return tuple(filter(None, [key_choice_note(provider.key_name or provider.name, settings.key_name)]))
    return (f"{backend.name} model wired in: provider {settings.provider} was not used and nothing was billed",)


def estimate_cost(
    settings: NodeSettings,
    *,
    edit_image: torch.Tensor | None = None,
    references: ReferenceSet | None = None,
    match_input_size: bool = True,
) -> CostEstimate:
    """The price of everything the node would send, before anything is sent and without a key."""
    requests, notes = build_requests(settings, edit_image=edit_image, references=references,
                                     match_input_size=match_input_size)
    backend = node_backend(settings)
    prepared = [backend.prepare(request) for request in requests]
    first = prepared[0].estimate
    total = estimate(prepared[0].request, settings.provider, count=len(prepared)) if first.usd is not None else first
    return replace(total, breakdown=total.breakdown + notes + prepared[0].notes)


def results_to_node_result(
    results: list[GenerationResult], settings: NodeSettings, notes: tuple[str, ...], *, failures: str = "",
    words: Words = ENGLISH_WORDS,
) -> NodeResult:
    """Stack the images in request order; the report leads with failures, then cost and task ids."""
    images = arrays_to_tensor([result.pixels for result in results])
    reported = [r.reported_cost for r in results if r.reported_cost is not None]
    lines = [failures] if failures else []
    if len(results) > 1:
        total = sum(r.estimate.usd or 0 for r in results)
        lines.append(batch_total(len(results), total, words))
    lines.extend(receipt(result, words) for result in results)
    lines.extend(note for note in notes if note not in "\n".join(lines))
    return NodeResult(images, settings.seed, "\n\n".join(lines), sum(reported) if reported else None)


def run_settings(
    settings: NodeSettings,
    hooks: RunHooks,
    *,
    edit_image: torch.Tensor | None = None,
    references: ReferenceSet | None = None,
    match_input_size: bool = True,
    cache: ResultCache | None = None,
    local: LocalChoice | None = None,
    journal: TaskJournal | None = None,
    words: Words = ENGLISH_WORDS,
) -> NodeResult:
    """Build, price and run every request of a node concurrently; stack the images in order.

    Everything is checked before the first request: every value as received, the number of paid
    requests against the cap. With a journal, a paid task of the same request that a crash,
    restart or Cancel left unfinished is resumed instead of paid again. When some images of a
    batch fail, the ones already paid for are still returned, and the report starts with which
    failed and why. Only when none succeeded does the node fail.
    """
    check_settings_before_paying(settings)
    requests, notes = build_requests(settings, edit_image=edit_image, references=references,
                                     match_input_size=match_input_size)
    backend = node_backend(settings, local, journal)
    prepared = [backend.prepare(request) for request in requests]
    check_paid_request_cap(prepared)
    notes += run_notes(settings, backend)
    try:
        results = backend.run_batch(prepared, hooks, cache if settings.use_cache else None)
    except BatchError as partial:
        if not partial.results:
            raise
        results = [partial.results[index] for index in sorted(partial.results)]
        return results_to_node_result(results, settings, notes, failures=str(partial), words=words)
    return results_to_node_result(results, settings, notes, words=words)
