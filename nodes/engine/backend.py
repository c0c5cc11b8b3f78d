"""One seam for every way to make an image: a remote provider or the local diffusers pipeline.

A caller (the command line, the nodes) picks a backend with `backend_for` and then only ever
prepares requests (validate, price, say what changes) and runs batches of them; it never asks
which kind of backend it holds. Remote runs follow the never-pay-twice lifecycle of the runner,
concurrently up to the provider's limit; local runs share one GPU and run one after another.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence

from .batch import generate_batch
from .journal import TaskJournal
from .local import LOCAL, LocalOptions
from .prepared import GenerationResult, PreparedRequest, RunHooks, RunSettings, prepare
from .providers import make_provider, provider_names
from .providers.base import Provider
from .request import FlexRequest
from .result_cache import ResultCache

if TYPE_CHECKING:  # the model folders' and pipelines' code: a remote run never loads it
    from .local import LocalModel, PipelineCache


def backend_names() -> tuple[str, ...]:
    """Every backend a run can name now: the providers (the user's gateways included), then local."""
    return (*provider_names(), LOCAL)


@dataclass(frozen=True)
class DryRun:
    """What a run would do, without doing it: where it would go and the exact settings sent."""

    destination: str
    body: dict[str, Any]


class Backend(Protocol):
    """Prepare requests, then run them; the same two steps for every backend."""

    name: str

    def prepare(self, request: FlexRequest, *, count: int = 1) -> PreparedRequest:
        """Validate (before any money is spent), shrink inputs where allowed, price, and note changes."""

    def dry_run(self, prepared: PreparedRequest) -> DryRun:
        """Where the request would go and what it would carry."""

    def check_ready(self) -> None:
        """Raise the FluxFlexError that would stop a run before it starts (a missing API key)."""

    def run_batch(self, prepared: Sequence[PreparedRequest], hooks: RunHooks = RunHooks(),
                  cache: ResultCache | None = None) -> list[GenerationResult]:
        """Run every prepared request; results in input order (a partial failure raises BatchError)."""


class RemoteBackend:
    """A provider's API (BFL, Replicate, fal, ...) through the runner's submit -> poll -> fetch.

    With a journal, every paid task is recorded before its first poll, and a run of a request
    whose paid task is unfinished resumes that task instead of paying again (durable.py).
    """

    def __init__(self, provider: Provider, settings: RunSettings = RunSettings(),
                 journal: TaskJournal | None = None) -> None:
        self.provider = provider
        self.settings = settings
        self.journal = journal
        self.name = provider.name

    def prepare(self, request: FlexRequest, *, count: int = 1) -> PreparedRequest:
        return prepare(request, self.provider, count=count)

    def dry_run(self, prepared: PreparedRequest) -> DryRun:
        return DryRun(f"POST {self.provider.submit_url(prepared.request)} ({self.provider.label})",
                      self.provider.dry_run_body(prepared.request))

    def check_ready(self) -> None:
        self.provider.api_key  # resolving raises MissingApiKeyError; the key itself stays inside

    def run_batch(self, prepared: Sequence[PreparedRequest], hooks: RunHooks = RunHooks(),
                  cache: ResultCache | None = None) -> list[GenerationResult]:
        return generate_batch(prepared, self.provider, hooks=hooks, settings=self.settings, cache=cache,
                              journal=self.journal)


class LocalBackend:
    """FLUX.2 [dev] or [klein] from a model folder on this machine; free, so never cached."""

    name = LOCAL

    def __init__(self, model: LocalModel, options: LocalOptions = LocalOptions(),
                 pipelines: PipelineCache | None = None) -> None:
        from .local import PIPELINES

        self.model = model
        self.options = options.validate()
        self.pipelines = PIPELINES if pipelines is None else pipelines  # the process's, unless a test brings its own

    def prepare(self, request: FlexRequest, *, count: int = 1) -> PreparedRequest:
        from .local import prepare_local  # loads numpy and Pillow: only a local run needs them

        return prepare_local(request, self.model, count=count)

    def dry_run(self, prepared: PreparedRequest) -> DryRun:
        return DryRun(f"local {self.model.label}", prepared.request.settings())

    def check_ready(self) -> None:
        """A local model needs no key; whether it loads is found out when it is loaded."""

    def run_batch(self, prepared: Sequence[PreparedRequest], hooks: RunHooks = RunHooks(),
                  cache: ResultCache | None = None) -> list[GenerationResult]:
        from .local import generate_local_batch

        return generate_local_batch(list(prepared), self.model, self.options, hooks=hooks, cache=self.pipelines)


def backend_for(
    target: str | LocalModel,
    *,
    local_model: str | Path = "",
    local_options: LocalOptions = LocalOptions(),
    environ: Mapping[str, str] | None = None,
    journal: TaskJournal | None = None,
    key_choice: str = "",
) -> Backend:
    """The backend for a provider name (with the stored key named `key_choice`, empty for the
    default key), for "local" with `local_model` (a folder name in the configured model roots,
    never a path), or for a LocalModel already resolved. `journal` records the paid tasks of a
    remote backend (a local run pays nothing).

    This is the one place that tells local runs from remote ones.
    """
    if not isinstance(target, str):  # a LocalModel
        return LocalBackend(target, local_options)
    if target == LOCAL:
        from .local import resolve_model

        return LocalBackend(resolve_model(str(local_model)), local_options)
    return RemoteBackend(make_provider(target, environ=environ, key_choice=key_choice), journal=journal)
