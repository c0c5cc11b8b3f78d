"""`flux-flex`: generate, estimate and dry-run FLUX.2 [flex] requests from a terminal.

Flags, ranges and defaults come from the request specs, so the CLI cannot drift from the nodes.
Every failure exits non-zero with one line on stderr. Without an API key, `generate` still does
something useful: it prints the exact request and its price (a dry run) and says which variable
to set.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Callable, Sequence

from PIL import Image

from .backend import BACKEND_NAMES, Backend, backend_for
from .errors import FluxFlexError, MissingApiKeyError
from .images import decode_image
from .local import LOCAL, OPTION_SPECS, LocalOptions, identify_model
from .request import (
    GUIDANCE, HEIGHT, OUTPUT_FORMAT_HELP, OUTPUT_FORMATS, PROMPT_HELP, PROMPT_UPSAMPLING_HELP,
    SAFETY_TOLERANCE, SEED, STEPS, WIDTH, FlexRequest, InputImage, NumberSpec,
)
from .result_cache import ResultCache
from .runner import GenerationResult, PreparedRequest, RunHooks

EXIT_FAILURE = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flux-flex", description="FLUX.2 [flex] from the command line.")
    commands = parser.add_subparsers(dest="command", required=True)
    generate_cmd = commands.add_parser("generate", help="generate an image (a dry run without an API key)")
    _add_request_flags(generate_cmd)
    generate_cmd.add_argument("--out", type=Path, required=True, help="where to save the image (.png, .jpg, .webp)")
    generate_cmd.add_argument("--dry-run", action="store_true", help="print the request and its price; send nothing")
    generate_cmd.add_argument("--cache-dir", type=Path, default=None,
                              help="keep results here: the same request with the same --seed is answered from disk, "
                              "with no request and no cost (off unless given)")
    estimate_cmd = commands.add_parser("estimate", help="print the price of a request; needs no key")
    _add_request_flags(estimate_cmd)
    return parser


def _add_request_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompt", required=True, help=PROMPT_HELP)
    for spec, kind in ((WIDTH, int), (HEIGHT, int), (STEPS, int), (GUIDANCE, float), (SAFETY_TOLERANCE, int)):
        _add_number_flag(parser, spec, kind)
    parser.add_argument("--seed", type=int, default=None, help=SEED.tooltip() + " Default: random.")
    parser.add_argument("--output-format", choices=OUTPUT_FORMATS, default="png", help=OUTPUT_FORMAT_HELP)
    parser.add_argument("--no-prompt-upsampling", dest="prompt_upsampling", action="store_false",
                        help=PROMPT_UPSAMPLING_HELP)
    parser.add_argument("--reference", action="append", type=Path, default=[], metavar="FILE",
                        help="an input image (repeat for several; the first is the image to edit)")
    parser.add_argument("--provider", choices=BACKEND_NAMES, default="bfl",
                        help="which API to call (default bfl), or local with --local-model")
    parser.add_argument("--local-model", type=Path, default=None,
                        help="for --provider local: a FLUX.2 [dev] or [klein] folder in diffusers format")
    for spec in OPTION_SPECS:
        parser.add_argument("--" + spec.name.replace("_", "-"), choices=spec.choices, default=spec.default,
                            help=spec.help)


def _add_number_flag(parser: argparse.ArgumentParser, spec: NumberSpec, kind: type) -> None:
    flag = "--" + spec.name.replace("_", "-")
    parser.add_argument(flag, type=kind, default=kind(spec.default), help=spec.tooltip())


def request_from_args(args: argparse.Namespace) -> FlexRequest:
    return FlexRequest(
        prompt=args.prompt,
        width=args.width,
        height=args.height,
        steps=args.steps,
        guidance=args.guidance,
        seed=args.seed,
        safety_tolerance=args.safety_tolerance,
        output_format=args.output_format,
        prompt_upsampling=args.prompt_upsampling,
        images=tuple(load_image_file(path) for path in args.reference),
    )


def load_image_file(path: Path) -> InputImage:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise FluxFlexError(f"Cannot read reference image {path}: {error.strerror}") from None
    return InputImage(decode_image(data))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        request = request_from_args(args)
        options = LocalOptions(args.local_dtype, args.local_offload, args.local_quantization)
        # The command line's user names any model folder by its path; a workflow only by name.
        target = identify_model(args.local_model) if args.provider == LOCAL and args.local_model else args.provider
        run_command(args, backend_for(target, local_options=options), request)
    except FluxFlexError as error:
        print(f"flux-flex: error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    return 0


def run_command(args: argparse.Namespace, backend: Backend, request: FlexRequest) -> None:
    prepared = backend.prepare(request)
    if args.command == "estimate":
        print(prepared.estimate.as_text())
    elif args.dry_run:
        print_dry_run(prepared, backend)
    else:
        run_generate(prepared, backend, args.out, ResultCache(args.cache_dir) if args.cache_dir else None)


def print_dry_run(prepared: PreparedRequest, backend: Backend) -> None:
    dry_run = backend.dry_run(prepared)
    print(dry_run.destination)
    print(json.dumps(dry_run.body, indent=2))
    for note in prepared.notes:
        print(f"note: {note}")
    print(prepared.estimate.as_text())


def run_generate(prepared: PreparedRequest, backend: Backend, out: Path, cache: ResultCache | None) -> None:
    try:
        backend.check_ready()  # without a key, fall back to a dry run
    except MissingApiKeyError as missing:
        print(f"flux-flex: {missing} Showing a dry run instead; nothing was sent.", file=sys.stderr)
        print_dry_run(prepared, backend)
        return
    (result,) = with_ctrl_c(lambda hooks: backend.run_batch([prepared], hooks, cache))
    save_result(result, out)


def with_ctrl_c(action: Callable[[RunHooks], list[GenerationResult]]) -> list[GenerationResult]:
    """Run with status lines on stderr; Ctrl-C cancels cleanly (naming any task already paid)."""
    cancelled = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: cancelled.set())
    try:
        return action(RunHooks(on_progress=_StatusPrinter(), is_cancelled=cancelled.is_set))
    finally:
        signal.signal(signal.SIGINT, previous)


def save_result(result: GenerationResult, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        Image.fromarray(result.pixels).save(out)
    except (OSError, ValueError) as error:
        raise FluxFlexError(f"Cannot save the image to {out}: {error}") from None
    print(f"saved {out}")
    print(result.report())


class _StatusPrinter:
    """Prints each new status once to stderr, so scripts can keep stdout clean."""

    def __init__(self) -> None:
        self._last = ""

    def __call__(self, fraction: float | None, status: str) -> None:
        line = status if fraction is None else f"{status} {fraction:.0%}"
        if line != self._last:
            print(line, file=sys.stderr)
            self._last = line


if __name__ == "__main__":
    sys.exit(main())
