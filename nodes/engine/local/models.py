"""Finding and identifying FLUX.2 model folders in diffusers' layout, and checking they are whole.

A folder qualifies by its model_index.json alone (no weights are read), so listing the folders
for ComfyUI's model choice is cheap. Completeness is checked before loading because diffusers,
told never to download (local_files_only), fails on a missing file with a message about the hub.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import FluxFlexError, InvalidRequestError, MissingModelError
from ..settings import current as current_settings

PIPELINE_KINDS = {"Flux2Pipeline": "dev", "Flux2KleinPipeline": "klein"}
WEIGHT_COMPONENTS = ("transformer", "vae", "text_encoder")  # the parts of both pipelines that hold weights
WEIGHT_SUFFIXES = (".safetensors", ".bin")
_LFS_POINTER = b"version https://git-lfs"
MODEL_FOLDER = "models/diffusers"  # where ComfyUI keeps diffusers folders, as a user sees it
# Black Forest Labs' FLUX.2 models in diffusers format on Hugging Face: a missing folder of one of
# these names is named with its source. https://huggingface.co/black-forest-labs
PUBLISHED_MODELS = {name: f"black-forest-labs/{name}" for name in (
    "FLUX.2-dev", "FLUX.2-klein-4B", "FLUX.2-klein-9B", "FLUX.2-klein-base-4B", "FLUX.2-klein-base-9B")}


@dataclass(frozen=True)
class LocalModel:
    """A FLUX.2 model folder, identified from its model_index.json."""

    path: Path
    kind: str  # "dev" or "klein"
    distilled: bool  # klein only: distilled variants ignore guidance and run in about 4 steps

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def label(self) -> str:
        variant = " distilled" if self.kind == "klein" and self.distilled else ""
        return f"FLUX.2 [{self.kind}]{variant} from {self.path}"


def identify_model(path: Path) -> LocalModel:
    """Read a folder's model_index.json; refuse anything that is not FLUX.2 dev or klein."""
    try:
        index = _read_index(path)
    except (OSError, ValueError):
        raise FluxFlexError(
            f"{path} is not a diffusers model folder (no readable model_index.json). Point it at a FLUX.2 [dev] "
            "or [klein] folder in diffusers format."
        ) from None
    kind = PIPELINE_KINDS.get(index.get("_class_name", ""))
    if kind is None:
        raise FluxFlexError(
            f"{path} holds a {index.get('_class_name')}, not FLUX.2 [dev] or [klein] "
            f"({' or '.join(PIPELINE_KINDS)} expected)."
        )
    return LocalModel(path.resolve(), kind, bool(index.get("is_distilled", False)))


def find_models(roots: Iterable[Path] | None = None) -> list[LocalModel]:
    """FLUX.2 model folders directly inside the given roots (by default the configured ones:
    ComfyUI's models/diffusers paths), sorted by name within each root; other folders are skipped."""
    models = []
    for root in current_settings().local_model_roots if roots is None else roots:
        for folder in sorted(p for p in Path(root).glob("*") if (p / "model_index.json").is_file()):
            try:
                models.append(identify_model(folder))
            except FluxFlexError:
                continue
    return models


def resolve_model(choice: str, roots: Iterable[Path] | None = None) -> LocalModel:
    """A model by the name of its folder directly inside one of the roots (by default the
    configured ones: ComfyUI's models/diffusers).

    Anything else (an absolute or relative path, `..`, a hidden name) is refused before the file
    system is touched: a shared workflow or a client on the network must not be able to probe
    which folders exist on the machine. The command line, whose user names any folder, uses
    `identify_model` on the path instead.
    """
    if not is_plain_folder_name(choice):
        raise InvalidRequestError("local_model", choice, f"the name of a FLUX.2 [dev] or [klein] folder in "
                                  f"{MODEL_FOLDER} (a folder name, not a path)")
    for root in current_settings().local_model_roots if roots is None else roots:
        if (Path(root) / choice / "model_index.json").is_file():
            return identify_model(Path(root) / choice)
    raise MissingModelError("local_model", choice, MODEL_FOLDER, repository=PUBLISHED_MODELS.get(choice))


def is_plain_folder_name(choice: str) -> bool:
    """A single, visible path component: no separator, no drive, not `.` or `..`, no NUL."""
    return (bool(choice) and choice == choice.strip() and not choice.startswith(".") and "\0" not in choice
            and not any(sep in choice for sep in ("/", "\\", ":")))


def check_complete(model: LocalModel) -> None:
    """Raise a FluxFlexError listing every missing part, before diffusers tries to load the folder."""
    index = _read_index(model.path)
    problems = []
    for component, entry in index.items():
        if component.startswith("_") or not isinstance(entry, list) or entry[0] is None:
            continue  # metadata such as is_distilled, or a component the pipeline does without
        folder = model.path / component
        if not folder.is_dir() or not any(folder.iterdir()):
            problems.append(f"{component}/ is missing or empty")
        elif component in WEIGHT_COMPONENTS:
            problems.extend(_weight_problems(folder))
    if problems:
        raise FluxFlexError(
            f"The model folder {model.path} is incomplete: {'; '.join(problems)}. Nothing is downloaded at run time: "
            "finish the download (for example `hf download <repo> --local-dir <folder>`) and run again."
        )


def _weight_problems(folder: Path) -> list[str]:
    """A component needs weight files; sharded ones need every shard their index names."""
    component = folder.name
    weights = [p for p in folder.iterdir() if p.name.endswith(WEIGHT_SUFFIXES)]
    problems = [f"{component}/{p.name} is a Git LFS pointer, not the weights (run `git lfs pull`)"
                for p in weights if _is_lfs_pointer(p)]
    for shard_index in folder.glob("*.index.json"):
        try:
            shards = set(json.loads(shard_index.read_text(encoding="utf-8"))["weight_map"].values())
        except (OSError, ValueError, KeyError, AttributeError):
            problems.append(f"{component}/{shard_index.name} is unreadable")
            continue
        missing = sorted(shard for shard in shards if not (folder / shard).is_file())
        if missing:
            problems.append(f"{component}/ lacks {len(missing)} of {len(shards)} weight shards ({', '.join(missing)})")
    if not weights:
        problems.append(f"{component}/ has no weights ({' or '.join(WEIGHT_SUFFIXES)} files)")
    return problems


def _is_lfs_pointer(path: Path) -> bool:
    if path.stat().st_size > 1024:
        return False
    with path.open("rb") as handle:
        return handle.read(len(_LFS_POINTER)) == _LFS_POINTER


def _read_index(path: Path) -> dict:
    return json.loads((path / "model_index.json").read_text(encoding="utf-8"))
