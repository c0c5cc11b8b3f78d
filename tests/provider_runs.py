"""Helpers the provider tests share: quick run settings, one run of a request, a test picture."""

from __future__ import annotations

import numpy as np

from comfyui_flux2_flex.nodes.engine.providers.base import Provider
from comfyui_flux2_flex.nodes.engine.request import FlexRequest, InputImage
from comfyui_flux2_flex.nodes.engine.runner import GenerationResult, RunSettings, generate, prepare

FAST = RunSettings(submit_retry_seconds=5.0, task_timeout_seconds=10.0, overload_wait_seconds=0.05)
FOX = FlexRequest(prompt="a red fox", width=320, height=256, seed=7)


def run(provider: Provider, request: FlexRequest | None = None, **kwargs) -> GenerationResult:
    """Prepare and generate one request (a 320x256 fox by default) with quick timeouts."""
    return generate(prepare(request or FOX, provider), provider, settings=kwargs.pop("settings", FAST), **kwargs)


def picture(width: int, height: int, value: int = 120) -> InputImage:
    """A flat grey input image of the given size."""
    return InputImage(np.full((height, width, 3), value, np.uint8))
