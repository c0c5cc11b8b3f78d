"""Throughput benchmark against the loopback BFL stand-in (a script, not a test).

Prints, from one run, ratios that do not depend on this machine's speed as much as seconds do:
client overhead per image as a fraction of the server's latency (and where it goes), a batch of
8 against one request, pickup delay and polls per task, HTTP requests per TCP connection, a cache
hit against a generation, peak memory with 8 references of 4 MP, and the PNG encoder settings.
Then the scheduling figures, each against its limit: polls per task and pickup delay for the first
tasks after a start and over 100 consecutive tasks (with the duration estimate's drift), two
processes sharing one key's 24-task cap (429s, wall time against whole rounds of tasks), and a
result-cache hit in-process and as a whole `flux-flex` process.
Run: python bench/bench_throughput.py (about two minutes on 2 cores).
"""

from __future__ import annotations

import io
import math
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fakes.bfl_server import FakeBfl, TaskPlan  # noqa: E402

from comfyui_flux2_flex.nodes.engine import runner  # noqa: E402
from comfyui_flux2_flex.nodes.engine.batch import generate_batch  # noqa: E402
from comfyui_flux2_flex.nodes.engine.durable import generate_cached  # noqa: E402
from comfyui_flux2_flex.nodes.engine.images import encode_base64  # noqa: E402
from comfyui_flux2_flex.nodes.engine.keys import ApiKey  # noqa: E402
from comfyui_flux2_flex.nodes.engine.providers.bfl import BflProvider  # noqa: E402
from comfyui_flux2_flex.nodes.engine.request import FlexRequest, InputImage  # noqa: E402
from comfyui_flux2_flex.nodes.engine.result_cache import ResultCache  # noqa: E402
from comfyui_flux2_flex.nodes.engine.runner import generate, prepare  # noqa: E402

LATENCY = 2.0  # seconds the stand-in takes per image, like a fast real task
LONG_LATENCY = 8.0  # a more typical task, for the polling figures
RNG = np.random.default_rng(0)


def photo_like(width: int, height: int) -> np.ndarray:
    """A gradient with noise: compresses like a photograph, unlike a flat test card."""
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    noise = RNG.normal(0, 12, (height, width, 3))
    return np.clip(ramp * 0.7 + noise + 40, 0, 255).astype(np.uint8)


def request(size: int, seed: int, references: int = 1) -> FlexRequest:
    refs = tuple(InputImage(photo_like(size, size)) for _ in range(references))
    return FlexRequest(prompt="bench", width=size, height=size, seed=seed, output_format="png", images=refs)


class Phases:
    """Seconds spent in each wrapped call, so the overhead can be split into its parts."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def wrap(self, name, function):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

        return timed


def timed_generate(bfl: FakeBfl, provider: BflProvider, req: FlexRequest) -> float:
    bfl.plans.append(TaskPlan(latency=LATENCY))
    start = time.perf_counter()
    generate(prepare(req, provider), provider)
    return time.perf_counter() - start


def overhead(bfl: FakeBfl, provider: BflProvider) -> None:
    timed_generate(bfl, provider, request(512, 0))  # warm-up: connection and duration history
    decode = runner.decode_image
    for label, size in (("1 MP", 1024), ("4 MP", 2048)):
        phases = Phases()
        provider.submit, provider.fetch = phases.wrap("submit", provider.submit), phases.wrap("download", provider.fetch)
        runner.decode_image = phases.wrap("decode", decode)
        requests = [request(size, seed) for seed in range(1, 4)]
        first_task = len(bfl.tasks)
        try:
            wall = statistics.median(timed_generate(bfl, provider, req) for req in requests)
        finally:
            del provider.submit, provider.fetch  # back to the class's methods
            runner.decode_image = decode
        for req in requests:  # the same encoding the submit did, timed on its own
            phases.wrap("encode", encode_base64)(req.images[0].pixels)
        tasks = list(bfl.tasks.values())[first_task:]
        parts = {
            "encode": phases.seconds["encode"],
            "upload": phases.seconds["submit"] - phases.seconds["encode"],
            "pickup": sum(t.ready_at - (t.created + t.plan.latency) for t in tasks),
            "download": phases.seconds["download"],
            "decode": phases.seconds["decode"],
        }
        split = ", ".join(f"{name} {seconds / len(requests) / LATENCY:.3f}" for name, seconds in parts.items())
        print(f"client overhead per image at {label} (1 reference in, 1 image out): "
              f"{(wall - LATENCY) / LATENCY:.2f} of the server latency ({wall - LATENCY:.2f} s over {LATENCY:g} s); "
              f"in parts of the latency: {split}")


def pickup(bfl: FakeBfl) -> None:
    """How late finished tasks were seen, and how often they were polled, by server latency."""
    for latency in sorted({t.plan.latency for t in bfl.tasks.values() if t.plan.latency and t.ready_at}):
        timed = [t for t in bfl.tasks.values() if t.plan.latency == latency and t.ready_at]
        delays = [t.ready_at - (t.created + latency) for t in timed]
        polls = statistics.mean(t.polls for t in timed)
        print(f"poll pickup at {latency:g} s tasks ({len(timed)}): delay median {statistics.median(delays):.2f} s, "
              f"max {max(delays):.2f} s; {polls:.1f} polls a task, {polls / latency:.2f} a second")


def long_tasks(bfl: FakeBfl, provider: BflProvider) -> None:
    """Eight concurrent tasks of a more typical length, so polls per second are not those of 2 s tasks."""
    prepared = [prepare(request(512, 500 + i, references=0), provider) for i in range(8)]
    bfl.plans.extend(TaskPlan(latency=LONG_LATENCY) for _ in range(8))
    generate_batch(prepared, provider)


def batch(bfl: FakeBfl, provider: BflProvider) -> None:
    single = timed_generate(bfl, provider, request(1024, 100, references=0))
    prepared = [prepare(request(1024, 200 + i, references=0), provider) for i in range(8)]
    bfl.plans.extend(TaskPlan(latency=LATENCY) for _ in range(8))
    start = time.perf_counter()
    generate_batch(prepared, provider)
    wall = time.perf_counter() - start
    print(f"batch of 8 wall time over one request: {wall / single:.2f} (goal <= 1.3; a serial client is 8)")


class Connections:
    """New TCP connections against HTTP requests (httpcore opens each with socket.create_connection)."""

    def __init__(self, bfl: FakeBfl) -> None:
        self._bfl = bfl
        self._opened = 0
        self._mark = (0, 0)
        create = socket.create_connection

        def counting(*args, **kwargs):
            self._opened += 1
            return create(*args, **kwargs)

        socket.create_connection = counting

    def report(self, label: str) -> None:
        requests, opened = len(self._bfl.all_requests()), self._opened
        new_requests, new_connections = requests - self._mark[0], opened - self._mark[1]
        self._mark = (requests, opened)
        print(f"connection reuse, {label}: {new_requests} HTTP requests opened {new_connections} TCP connections")


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
            runs = []
            for _ in range(3):  # the median of three: single encodes vary by 20% on a busy machine
                buffer = io.BytesIO()
                start = time.perf_counter()
                Image.fromarray(pixels).save(buffer, format="PNG", compress_level=level)
                runs.append(time.perf_counter() - start)
            times[level], sizes[level] = statistics.median(runs), len(buffer.getvalue())
        print(f"PNG encode at {label}, against level 6: level 1 takes {times[1] / times[6]:.2f} of the time for "
              f"{sizes[1] / sizes[6]:.2f} of the size; level 0 takes {times[0] / times[6]:.2f} of the time for "
              f"{sizes[0] / sizes[6]:.2f} of the size")


# Issue 13's scheduling figures: polling, the shared task cap and the cache path ---------------------
BFL_LAG = 0.5  # the stand-in answers "Task not found" this long after a submit, as BFL does for a moment
POLL_LIMIT, PICKUP_LIMIT, CACHE_HIT_LIMIT, CLI_HIT_LIMIT = 2, 0.3, 0.1, 0.3
WORKER = Path(__file__).resolve().parent.parent / "tests" / "batch_process.py"


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def _poll_figures(bfl: FakeBfl, task_ids: list[str]) -> tuple[list[int], list[float]]:
    """Polls per task (those answered "Task not found" too) and how late each finished task was seen."""
    polls = {task_id: 0 for task_id in task_ids}
    for request in bfl.cluster.requests:
        if request.query.get("id") in polls:
            polls[request.query["id"]] += 1
    tasks = [bfl.tasks[task_id] for task_id in task_ids]
    return list(polls.values()), [t.ready_at - (t.created + t.plan.latency) for t in tasks]


def _run_wave(bfl: FakeBfl, provider: BflProvider, count: int, first_seed: int) -> list[str]:
    before = set(bfl.tasks)
    bfl.plans.extend(TaskPlan(latency=LATENCY, visible_after=BFL_LAG) for _ in range(count))
    prepared = [prepare(request(256, first_seed + i, references=0), provider) for i in range(count)]
    generate_batch(prepared, provider)
    return [task_id for task_id in bfl.tasks if task_id not in before]


def polling_schedule(bfl: FakeBfl, provider: BflProvider) -> None:
    """Polls per task and pickup delay for the first tasks after a start, then over 100 tasks."""
    runner.DURATIONS.clear()  # a fresh start: no history
    polls, late = _poll_figures(bfl, _run_wave(bfl, provider, 8, 5000))
    print(f"first tasks after a start (8 at once, {LATENCY:g} s, 'Task not found' for {BFL_LAG:g} s): "
          f"{max(polls) / POLL_LIMIT:.2f} of the {POLL_LIMIT}-poll limit at most; pickup p50 "
          f"{_percentile(late, 0.5) / PICKUP_LIMIT:.2f}, p95 {_percentile(late, 0.95) / PICKUP_LIMIT:.2f} of the "
          f"{PICKUP_LIMIT:g} s limit ({_percentile(late, 0.5):.3f} s, {_percentile(late, 0.95):.3f} s)")
    ids, estimates = [], []
    for wave in range(10):
        ids += _run_wave(bfl, provider, 10, 6000 + 100 * wave)
        estimates.append(runner.DURATIONS.expected(provider.name))
    polls, late = _poll_figures(bfl, ids)
    drift = max(abs(estimate - LATENCY) for estimate in estimates)
    print(f"100 consecutive tasks (10 waves of 10): polls per task mean {statistics.mean(polls):.2f}, max {max(polls)} "
          f"({max(polls) / POLL_LIMIT:.2f} of the limit; {statistics.mean(polls) / LATENCY:.2f} polls a second); pickup "
          f"p50 {_percentile(late, 0.5) / PICKUP_LIMIT:.2f}, p95 {_percentile(late, 0.95) / PICKUP_LIMIT:.2f} of the "
          f"limit ({_percentile(late, 0.5):.3f} s, {_percentile(late, 0.95):.3f} s); the duration estimate went "
          f"{estimates[0]:.3f} -> {estimates[-1]:.3f} s for {LATENCY:g} s tasks, at most {drift / LATENCY:.3f} of the "
          "task time off")


def shared_cap() -> None:
    """Two processes with one key, a batch of 16 each, against the 24-task cap: wall time over the
    ideal (whole rounds of 24 tasks) and the 429s met."""
    with FakeBfl() as bfl, tempfile.TemporaryDirectory() as folder:
        bfl.plans.extend(TaskPlan(latency=LATENCY) for _ in range(32))
        env = {**os.environ, "BFL_API_KEY": bfl.api_key, "FLUX_FLEX_BFL_URL": bfl.api_url, "XDG_CACHE_HOME": folder}
        start = time.perf_counter()
        workers = [subprocess.Popen([sys.executable, str(WORKER), "16", str(seed)], env=env,
                                    stdout=subprocess.DEVNULL) for seed in (1, 100)]
        codes = [worker.wait() for worker in workers]
        wall = time.perf_counter() - start
        posts = sum(1 for r in bfl.api.requests if r.path == "/v1/flux-2-flex" and r.method == "POST")
        tasks = list(bfl.tasks.values())
        span = max(t.ready_at for t in tasks) - min(t.created for t in tasks)
    ideal = math.ceil(32 / 24) * LATENCY
    print(f"2 processes x batch of 16, one key, 24-task cap (exit codes {codes}): {posts - len(tasks)} x 429; "
          f"first submit to last image ready {span / ideal:.2f} of the ideal ({span:.2f} s over "
          f"{math.ceil(32 / 24)} rounds x {LATENCY:g} s); the whole run with both processes' start "
          f"{wall / ideal:.2f} ({wall:.2f} s)")


def _fresh_copy(req: FlexRequest) -> FlexRequest:
    """The same request with new image objects, as a rerun in ComfyUI builds them: nothing remembered."""
    return replace(req, images=tuple(InputImage(image.pixels.copy()) for image in req.images))


def cache_hit_figures(bfl: FakeBfl, provider: BflProvider) -> None:
    """A result-cache hit with 8 references of 4 MP, in-process (1 MP and 4 MP out), and as a
    whole `flux-flex` process."""
    with tempfile.TemporaryDirectory() as folder:
        cache = ResultCache(Path(folder))
        for size in (1024, 2048):
            req = replace(request(2048, 700 + size, references=8), width=size, height=size)
            bfl.plans.append(TaskPlan(latency=LATENCY))
            start = time.perf_counter()
            generate_cached(prepare(req, provider), provider, cache)
            miss = time.perf_counter() - start
            hits = []
            for _ in range(3):
                fresh = _fresh_copy(req)
                start = time.perf_counter()
                generate_cached(prepare(fresh, provider), provider, cache)
                hits.append(time.perf_counter() - start)
            hit = statistics.median(hits)
            print(f"cache hit, 8 references of 4 MP, {size * size / 2**20:g} MP out: {hit / CACHE_HIT_LIMIT:.2f} of the "
                  f"{CACHE_HIT_LIMIT * 1000:.0f} ms limit ({hit * 1000:.0f} ms; {hit / miss:.3f} of a generation)")
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "BFL_API_KEY": bfl.api_key, "FLUX_FLEX_BFL_URL": bfl.api_url, "XDG_CACHE_HOME": folder}
        command = [str(Path(sys.executable).with_name("flux-flex")), "generate", "--prompt", "a cached poster",
                   "--width", "1024", "--height", "1024", "--seed", "9", "--out", f"{folder}/out.png",
                   "--cache-dir", f"{folder}/cache"]
        bfl.plans.append(TaskPlan(latency=LATENCY))
        subprocess.run(command, env=env, check=True, capture_output=True)
        runs, cpu = [], []
        for _ in range(5):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(command, env=env, check=True, capture_output=True)
            runs.append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        bare = []
        for _ in range(3):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            bare.append(time.perf_counter() - start)
    hit, python = statistics.median(runs), statistics.median(bare)
    print(f"CLI cache hit as a whole process (1 MP, no references): {hit / CLI_HIT_LIMIT:.2f} of the "
          f"{CLI_HIT_LIMIT:g} s limit ({hit:.2f} s, of which {python:.2f} s is a bare Python start; "
          f"{statistics.median(cpu):.2f} s of CPU, which other work on the machine does not inflate)")


def main() -> None:
    with FakeBfl() as bfl:
        provider = BflProvider(base_url=bfl.api_url, api_key=ApiKey(bfl.api_key))
        connections = Connections(bfl)
        overhead(bfl, provider)
        connections.report("7 images one after another (3 servers: API, polling, delivery)")
        batch(bfl, provider)
        connections.report("1 image then a batch of 8 at once")
        long_tasks(bfl, provider)
        pickup(bfl)
        cache_hit(bfl, provider)
        peak_memory(bfl, provider)
        polling_schedule(bfl, provider)
        cache_hit_figures(bfl, provider)
    shared_cap()
    png_levels()


if __name__ == "__main__":
    main()
