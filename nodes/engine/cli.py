"""`flux-flex`: generate, estimate and dry-run FLUX.2 [flex] requests from a terminal.

Flags, ranges and defaults come from the request specs, so the CLI cannot drift from the nodes.
Every failure exits non-zero with one line on stderr. Without an API key, `generate` still does
something useful: it prints the exact request and its price (a dry run) and says which variable
to set. Every paid task is journaled (in --cache-dir, else a per-user folder): rerunning an
interrupted request resumes its task, and `tasks` / `recover ID` list and fetch paid images that
were not delivered.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence, TypeVar

# numpy starts a BLAS thread per core on import (a run answered from the result cache never loads
# it; a run with references or a request does); the engine does no linear algebra with numpy
# (pixels only), so one thread loses nothing. Set before anything loads numpy, and only where the
# user has not chosen a number.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .backend import Backend, backend_for, backend_names
from .durable import recover
from .errors import FluxFlexError, MissingApiKeyError
from .files import TEMPORARY_PREFIX
from .journal import TaskJournal, default_journal_folder
from .local import LOCAL, OPTION_SPECS, LocalOptions
from .providers import make_provider
from .request import (
    GUIDANCE, HEIGHT, OUTPUT_FORMAT_HELP, OUTPUT_FORMATS, PROMPT_HELP, PROMPT_UPSAMPLING_HELP,
    SAFETY_TOLERANCE, SEED, STEPS, UPLOAD_FORMAT_DEFAULT, UPLOAD_FORMAT_HELP, UPLOAD_FORMATS, WIDTH, FlexRequest,
    InputImage, NumberSpec,
)
from .result_cache import ResultCache
from .prepared import GenerationResult, PreparedRequest, RunHooks

if TYPE_CHECKING:
    from .local import LocalModel

T = TypeVar("T")
EXIT_FAILURE = 1
# Pillow tells these formats by the name, as --out is checked here; saving by the name loads only
# that format's plugin, where naming the format makes Pillow load five.
SAVE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
OUT_HELP = f"where to save the image ({', '.join(SAVE_SUFFIXES)}); checked before anything is paid"
_TERMINAL_FALLBACK = 80  # columns of help text where no terminal says otherwise, as shutil assumes
MAX_REFERENCE_BYTES = 256 * 1024 * 1024  # far above any photo; stops /dev/zero and the like
CACHE_DIR_HELP = ("keep results here: the same request with the same --seed is answered from disk, with no request "
                  "and no cost (off unless given); the journal of paid tasks is kept here too")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Every command with its flags, or with `command` given, every command but only its flags: a
    run parses one command, and building the others' (some twenty each) costs a cache hit time."""
    parser = argparse.ArgumentParser(prog="flux-flex", description="FLUX.2 [flex] from the command line.",
                                     formatter_class=_HelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_flags) in _COMMANDS.items():
        subparser = commands.add_parser(name, help=help_text, formatter_class=_HelpFormatter)
        if command in (None, name):
            add_flags(subparser)
    return parser


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, told the terminal's width: left to find it, argparse imports shutil
    (and with it bz2 and lzma), 2 ms of every run, for help that a run never prints. The width is
    found as shutil.get_terminal_size finds it (COLUMNS, else the terminal, else 80), less
    argparse's margin of 2."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=_terminal_columns() - 2)


def _terminal_columns() -> int:
    try:
        return int(os.environ["COLUMNS"]) or _TERMINAL_FALLBACK
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or _TERMINAL_FALLBACK
    except (AttributeError, ValueError, OSError):  # no stdout, or not a terminal
        return _TERMINAL_FALLBACK


def _add_generate_flags(parser: argparse.ArgumentParser) -> None:
    _add_request_flags(parser)
    parser.add_argument("--out", type=Path, required=True, help=OUT_HELP)
    parser.add_argument("--dry-run", action="store_true", help="print the request and its price; send nothing")
    parser.add_argument("--cache-dir", type=Path, default=None, help=CACHE_DIR_HELP)


def _add_tasks_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", type=Path, default=None, help="the --cache-dir the runs used, if any")


def _add_recover_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task_id", help="the task id, as `tasks` or an error message names it")
    parser.add_argument("--out", type=Path, required=True, help=OUT_HELP)
    parser.add_argument("--cache-dir", type=Path, default=None, help="the --cache-dir the run used, if any")


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
    parser.add_argument("--upload-format", choices=UPLOAD_FORMATS, default=UPLOAD_FORMAT_DEFAULT,
                        help=UPLOAD_FORMAT_HELP)
    parser.add_argument("--provider", default="bfl", metavar="NAME",
                        help=f"which API to call (default bfl): {', '.join(backend_names())} (local with "
                        "--local-model); a gateway you added in gateways.json by its name")
    parser.add_argument("--local-model", type=Path, default=None,
                        help="for --provider local: a FLUX.2 [dev] or [klein] folder in diffusers format")
    for spec in OPTION_SPECS:
        parser.add_argument("--" + spec.name.replace("_", "-"), choices=spec.choices, default=spec.default,
                            help=spec.help)


def _add_number_flag(parser: argparse.ArgumentParser, spec: NumberSpec, kind: type) -> None:
    flag = "--" + spec.name.replace("_", "-")
    parser.add_argument(flag, type=kind, default=kind(spec.default), help=spec.tooltip())


# Each command: its help line and what adds its flags.
_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    "generate": ("generate an image (a dry run without an API key)", _add_generate_flags),
    "estimate": ("print the price of a request; needs no key", _add_request_flags),
    "tasks": ("list paid tasks whose image was not delivered", _add_tasks_flags),
    "recover": ("fetch the image of a paid task (see `tasks`); pays nothing", _add_recover_flags),
}


def request_from_args(args: argparse.Namespace) -> FlexRequest:
    if args.reference:
        from .heap import hand_freed_images_back

        hand_freed_images_back()
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
        upload_format=args.upload_format,
    )


def load_image_file(path: Path) -> InputImage:
    """A reference image from a regular file of sane size (a device or a FIFO would never end),
    checked from its header now and decoded only when it is used (image_files.ReferenceFile)."""
    try:
        if not path.is_file():
            raise FluxFlexError(f"Reference image {path} is not a regular file.")
        if path.stat().st_size > MAX_REFERENCE_BYTES:
            raise FluxFlexError(f"Reference image {path} is over {MAX_REFERENCE_BYTES // 2**20} MB.")
    except OSError as error:
        raise FluxFlexError(f"Cannot read reference image {path}: {error.strerror}") from None
    from .image_files import ReferenceFile  # Pillow and numpy: a run without references (a cache hit) loads neither

    return InputImage(ReferenceFile.open(path, label=f"reference image {path}"))


def check_out_path(out: Path) -> None:
    """Everything about --out that can fail, checked before anything is paid."""
    if out.suffix.lower() not in SAVE_SUFFIXES:
        raise FluxFlexError(f"--out {out}: the name must end in one of {', '.join(SAVE_SUFFIXES)} (the image format).")
    if out.is_dir():
        raise FluxFlexError(f"--out {out} is a folder; give a file name.")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FluxFlexError(f"--out {out}: cannot create its folder ({error.strerror}).") from None
    # By writing, not os.access: root passes every access check, and /proc refuses files all the same.
    # A probe of its own random name, not tempfile's, which loads shutil and random on every run.
    probe = out.parent / f"{TEMPORARY_PREFIX}{os.urandom(6).hex()}{out.suffix}"
    try:
        open(probe, "xb").close()
        probe.unlink()
        if out.exists():
            open(out, "r+b").close()  # opened for writing, not truncated
    except OSError as error:
        raise FluxFlexError(f"--out {out}: not writable ({error.strerror or error}).") from None


def journal_for(cache_dir: Path | None) -> TaskJournal:
    """The journal of paid tasks: in --cache-dir when given, else in the per-user folder."""
    return TaskJournal((cache_dir or default_journal_folder()) / "journal")


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv[0] if argv and argv[0] in _COMMANDS else None).parse_args(argv)
    try:
        if args.command == "tasks":
            list_tasks(journal_for(args.cache_dir))
        elif args.command == "recover":
            recover_task(args.task_id, args.out, journal_for(args.cache_dir))
        else:
            options = LocalOptions(args.local_dtype, args.local_offload, args.local_quantization)
            journal = journal_for(args.cache_dir) if args.command == "generate" else None
            backend = backend_for(_target(args), local_options=options, journal=journal)
            run_command(args, backend, request_from_args(args))
    except FluxFlexError as error:
        print(f"flux-flex: error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as error:  # a full disk or a vanished folder: one line, never a traceback
        print(f"flux-flex: error: {error.strerror or error}: {error.filename or ''}".rstrip(": "), file=sys.stderr)
        return EXIT_FAILURE
    return 0


def _target(args: argparse.Namespace) -> str | LocalModel:
    """The provider named, or the model folder a local run names by its path (a workflow names
    one only by its name in the model folders)."""
    if args.provider != LOCAL or not args.local_model:
        return args.provider
    from .local import identify_model

    return identify_model(args.local_model)


def list_tasks(journal: TaskJournal) -> None:
    """Paid tasks whose image was not delivered, oldest first, with how to fetch each."""
    pending = journal.undelivered()
    if not pending:
        print(f"No paid task is waiting for delivery (journal: {journal.folder}).")
        return
    for entry in pending:
        print(entry.describe())
    print(f"Fetch one with: flux-flex recover TASK_ID --out image.png (journal: {journal.folder})")


def recover_task(task_id: str, out: Path, journal: TaskJournal) -> None:
    entry = journal.find(task_id)
    if entry is None:
        raise FluxFlexError(f"No paid task {task_id} in the journal at {journal.folder}; `flux-flex tasks` lists them.")
    check_out_path(out)
    provider = make_provider(entry.provider)
    save_result(with_ctrl_c(lambda hooks: recover(entry, provider, journal, hooks=hooks)), out)


def run_command(args: argparse.Namespace, backend: Backend, request: FlexRequest) -> None:
    prepared = backend.prepare(request)
    if args.command == "estimate":
        print(prepared.estimate.as_text())
    elif args.dry_run:
        print_dry_run(prepared, backend)
    else:
        check_out_path(args.out)
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


def with_ctrl_c(action: Callable[[RunHooks], T]) -> T:
    """Run with status lines on stderr; Ctrl-C cancels cleanly (naming any task already paid)."""
    cancelled = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: cancelled.set())
    try:
        return action(RunHooks(on_progress=_StatusPrinter(), is_cancelled=cancelled.is_set))
    finally:
        signal.signal(signal.SIGINT, previous)


def save_result(result: GenerationResult, out: Path) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if result.png_file is not None and out.suffix.lower() == ".png":
            out.write_bytes(result.png_file)  # a cache hit's stored file: what saving would write, already made
        else:
            result.picture().save(out)  # in the format its name says (see SAVE_SUFFIXES)
    except (OSError, ValueError) as error:
        again = "" if result.from_cache else (
            f" The image was paid: fetch it again with `flux-flex recover {result.task_id} --out OTHER_FILE`.")
        raise FluxFlexError(f"Cannot save the image to {out}: {error}.{again}") from None
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
