"""Throughput benchmark against the loopback BFL stand-in (a script, not a test).

Prints, from one run, ratios that do not depend on this machine's speed as much as seconds do:
client overhead per image as a fraction of the server's latency, a batch of 8 against one
request, pickup delay and polls per task, a cache hit against a generation, peak memory with 8
references of 4 MP, and the PNG encoder settings. Run: python bench/bench_throughput.py
"""

from __future__ import annotations

import io
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fakes.bfl_server import FakeBfl, TaskPlan  # noqa: E402

from comfyui_flux2_flex.nodes.engine.batch import generate_batch, generate_cached  # noqa: E402
from comfyui_flux2_flex.nodes.engine.keys import ApiKey  # noqa: E402
from comfyui_flux2_flex.nodes.engine.providers.bfl import BflProvider  # noqa: E402
from comfyui_flux2_flex.nodes.engine.request import FlexRequest, InputImage  # noqa: E402
from comfyui_flux2_flex.nodes.engine.result_cache import ResultCache  # noqa: E402
from comfyui_flux2_flex.nodes.engine.runner import generate, prepare  # noqa: E402

LATENCY = 2.0  # seconds the stand-in takes per image, like a fast real task
RNG = np.random.default_rng(0)


def photo_like(width: int, height: int) -> np.ndarray:
    """A gradient with noise: compresses like a photograph, unlike a flat test card."""
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    noise = RNG.normal(0, 12, (height, width, 3))
    return np.clip(ramp * 0.7 + noise + 40, 0, 255).astype(np.uint8)


def request(size: int, seed: int, references: int = 1) -> FlexRequest:
    refs = tuple(InputImage(photo_like(size, size)) for _ in range(references))
    return FlexRequest(prompt="bench", width=size, height=size, seed=seed, output_format="png", images=refs)


def timed_generate(bfl: FakeBfl, provider: BflProvider, req: FlexRequest) -> float:
    bfl.plans.append(TaskPlan(latency=LATENCY))
    start = time.perf_counter()
    generate(prepare(req, provider), provider)
    return time.perf_counter() - start


def overhead(bfl: FakeBfl, provider: BflProvider) -> None:
    timed_generate(bfl, provider, request(512, 0))  # warm-up: connection and duration history
    for label, size in (("1 MP", 1024), ("4 MP", 2048)):
        walls = [timed_generate(bfl, provider, request(size, seed)) for seed in range(1, 4)]
        wall = statistics.median(walls)
        print(f"client overhead per image at {label} (1 reference in, 1 image out): "
              f"{(wall - LATENCY) / LATENCY:.2f} of the server latency ({wall - LATENCY:.2f} s over {LATENCY:g} s)")


def pickup(bfl: FakeBfl) -> None:
    timed = [t for t in bfl.tasks.values() if t.plan.latency and t.ready_at]
    delays = [t.ready_at - (t.created + t.plan.latency) for t in timed]
    polls = [t.polls / t.plan.latency for t in timed]
    print(f"poll pickup delay: median {statistics.median(delays):.2f} s, max {max(delays):.2f} s; "
          f"polls per second per task: {statistics.mean(polls):.2f} ({statistics.mean(t.polls for t in timed):.1f} a task)")


def batch(bfl: FakeBfl, provider: BflProvider) -> None:
    single = timed_generate(bfl, provider, request(1024, 100, references=0))
    prepared = [prepare(request(1024, 200 + i, references=0), provider) for i in range(8)]
    bfl.plans.extend(TaskPlan(latency=LATENCY) for _ in range(8))
    start = time.perf_counter()
    generate_batch(prepared, provider)
    wall = time.perf_counter() - start
    print(f"batch of 8 wall time over one request: {wall / single:.2f} (goal <= 1.3; a serial client is 8)")


def cache_hit(bfl: FakeBfl, provider: BflProvider) -> None:
    with tempfile.TemporaryDirectory() as folder:
        cache = ResultCache(Path(folder))
        prepared = prepare(request(1024, 300), provider)
        bfl.plans.append(TaskPlan(latency=LATENCY))
        start = time.perf_counter()
        generate_cached(prepared, provider, cache)
        miss = time.perf_counter() - start
        start = time.perf_counter()
        generate_cached(prepared, provider, cache)
        hit = time.perf_counter() - start
    print(f"cache hit time over a generation (1 MP): {hit / miss:.3f} ({hit * 1000:.0f} ms against {miss:.2f} s)")


def peak_memory(bfl: FakeBfl, provider: BflProvider) -> None:
    req = request(2048, 400, references=8)
    raw = sum(image.pixels.nbytes for image in req.images)
    bfl.plans.append(TaskPlan(latency=0.5))
    tracemalloc.start()
    generate(prepare(req, provider), provider)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"peak memory with 8 references of 4 MP: {peak / 2**20:.0f} MiB, {peak / raw:.2f}x the references' raw pixels")


def png_levels() -> None:
    for label, size in (("1 MP", 1024), ("4 MP", 2048)):
        pixels = photo_like(size, size)
        times, sizes = {}, {}
        for level in (0, 1, 6):
            buffer = io.BytesIO()
            start = time.perf_counter()
            Image.fromarray(pixels).save(buffer, format="PNG", compress_level=level)
            times[level], sizes[level] = time.perf_counter() - start, len(buffer.getvalue())
        print(f"PNG encode at {label}: level 1 takes {times[1] / times[6]:.2f} of level 6's time for "
              f"{sizes[1] / sizes[6]:.2f} of its size; level 0 is {sizes[0] / sizes[6]:.2f} of the size")


def main() -> None:
    with FakeBfl() as bfl:
        provider = BflProvider(base_url=bfl.api_url, api_key=ApiKey(bfl.api_key))
        overhead(bfl, provider)
        batch(bfl, provider)
        pickup(bfl)
        cache_hit(bfl, provider)
        peak_memory(bfl, provider)
    png_levels()


if __name__ == "__main__":
    main()
