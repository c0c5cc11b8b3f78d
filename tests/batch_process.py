"""A batch run in a process of its own, against the provider stand-in that the environment names
(FLUX_FLEX_BFL_URL, BFL_API_KEY): the cross-process tests and the benchmark start two of these.

Usage: python tests/batch_process.py COUNT FIRST_SEED; prints the number of images it got.
"""

from __future__ import annotations

import sys

from comfyui_flux2_flex.nodes.engine.batch import generate_batch
from comfyui_flux2_flex.nodes.engine.providers import make_provider
from comfyui_flux2_flex.nodes.engine.request import FlexRequest, seeded_requests
from comfyui_flux2_flex.nodes.engine.runner import prepare


def main(count: int, first_seed: int) -> None:
    provider = make_provider("bfl")
    request = FlexRequest(prompt="two processes, one key", width=64, height=64, seed=first_seed)
    results = generate_batch([prepare(item, provider) for item in seeded_requests(request, count)], provider)
    print(len(results), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
