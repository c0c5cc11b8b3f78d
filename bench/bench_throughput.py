"""Throughput benchmark against the loopback BFL stand-in (a script, not a test).

Prints, from one run, ratios that do not depend on this machine's speed as much as seconds do:
client overhead per image against the least the same bytes need (encoding on all cores, loopback
transfer, decoding) and where it goes, a batch of 8 against one request, a batch of 4 sharing two
references against one request, pickup delay and polls per task, HTTP requests per TCP
connection, a cache hit against a generation, the command line's peak RSS per 4 MP reference
against its pixels, and PNG encoding at each zlib level on photographic and flat images.
Then the scheduling figures, each against its limit: polls per task and pickup delay for the first
tasks after a start and over 100 consecutive tasks (with the duration estimate's drift), two
processes sharing one key's 24-task cap (429s, wall time against whole rounds of tasks), and a
result-cache hit in-process and as a whole `flux-flex` process (against a Python process that
only copies the stored image with Pillow).
Run: python bench/bench_throughput.py (a few minutes on 2 cores).
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
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fakes.bfl_server import FakeBfl, TaskPlan  # noqa: E402
from fakes.pictures import render_result  # noqa: E402

from comfyui_flux2_flex.nodes.engine import runner  # noqa: E402
from comfyui_flux2_flex.nodes.engine.batch import generate_batch  # noqa: E402
from comfyui_flux2_flex.nodes.engine.durable import generate_cached  # noqa: E402
from comfyui_flux2_flex.nodes.engine.images import PNG_COMPRESS_LEVEL, upload_all_base64  # noqa: E402
from comfyui_flux2_flex.nodes.engine.keys import ApiKey  # noqa: E402
from comfyui_flux2_flex.nodes.engine.providers.bfl import BflProvider  # noqa: E402
from comfyui_flux2_flex.nodes.engine.request import FlexRequest, InputImage, seeded_requests  # noqa: E402
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


def request(size: int, seed: int, references: int = 1, upload_format: str = "png") -> FlexRequest:
    refs = tuple(InputImage(photo_like(size, size)) for _ in range(references))
    return FlexRequest(prompt="bench", width=size, height=size, seed=seed, output_format="png", images=refs,
                       upload_format=upload_format)


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


def encode_limit(req: FlexRequest) -> float:
    """Seconds to encode the request's images in its upload format on all cores, from fresh
    copies (nothing memoized): what any client must spend before the body can go out."""
    fresh = [InputImage(image.pixels) for image in req.images]
    start = time.perf_counter()
    upload_all_base64(fresh, req.upload_format)
    return time.perf_counter() - start


def loopback_seconds(size: int) -> float:
    """Seconds to move `size` bytes through a loopback TCP connection: the wire's share of the limit."""
    payload = memoryview(bytearray(size))
    with socket.create_server(("127.0.0.1", 0)) as server:
        def drain() -> None:
            connection, _ = server.accept()
            with connection:
                left = size
                while left:
                    left -= len(connection.recv(1 << 20)) or left
        reader = threading.Thread(target=drain)
        reader.start()
        with socket.socket() as sender:  # not create_connection: Connections counts only the client's
            sender.connect(server.getsockname())
            start = time.perf_counter()
            sender.sendall(payload)
            reader.join()
            return time.perf_counter() - start


OVERHEAD_CASES = (("1 MP out + one 1 MP reference", 1024, 1), ("4 MP out + 8 x 4 MP references", 2048, 8))
OVERHEAD_FORMATS = ("png", "jpeg")
OVERHEAD_REQUESTS = 5  # per case and format: two swung the median by a tenth of the limit


def overhead(bfl: FakeBfl, provider: BflProvider) -> None:
    """Client time per image (wall time over the server's latency and the stand-in's own handling:
    parsing the body, rendering the result) against the least the bytes need: encoding the same
    images on all cores, moving the body and the result over loopback and decoding the result.
    1 MP out with one 1 MP reference, 4 MP out with eight 4 MP ones."""
    timed_generate(bfl, provider, request(512, 0))  # warm-up: connection and duration history
    for label, size, references in OVERHEAD_CASES:
        for upload_format in OVERHEAD_FORMATS:
            spent, parts, limits = overhead_figures(bfl, provider, size, references, upload_format)
            limit = sum(limits.values())
            split = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in parts.items())
            bound = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in limits.items())
            print(f"client overhead, {label}, {upload_format} uploads: {spent / limit:.2f}x the limit "
                  f"({spent:.2f} s against {limit:.2f} s; {spent / LATENCY:.3f} of the {LATENCY:g} s task); "
                  f"spent (means): {split}; limit on {os.cpu_count()} cores: {bound}")


def overhead_figures(bfl: FakeBfl, provider: BflProvider, size: int, references: int,
                     upload_format: str) -> tuple[float, dict[str, float], dict[str, float]]:
    """Median client seconds of OVERHEAD_REQUESTS requests, where they went (means), and the
    limit's parts. The stand-in runs in this process: the time its handlers take (json.loads of a
    20 MB body, rendering a 4 MP result) is the server's, not the client's, and is taken out of
    each request's wall time and of the phase it falls in."""
    phases = Phases()
    decode = runner.decode_image
    provider.submit, provider.fetch = phases.wrap("submit", provider.submit), phases.wrap("download", provider.fetch)
    runner.decode_image = phases.wrap("decode", decode)
    requests = [request(size, seed, references, upload_format) for seed in range(1, OVERHEAD_REQUESTS + 1)]
    count = len(requests)
    # The encoding limit, on fresh copies (nothing is kept): before the runs on their images, and
    # after them on images made the same way, so neither a cold nor a warm process sets it alone.
    encodes = [encode_limit(req) for req in requests]
    fresh = [InputImage(image.pixels) for image in requests[0].images]  # the run itself must encode its own
    body_bytes = sum(len(upload) for upload in upload_all_base64(fresh, upload_format))
    first_task = len(bfl.tasks)
    walls, served = [], [0.0] * len(bfl.servers)  # the stand-in's seconds per server: API, polls, delivery
    try:
        while requests:  # back to back, as a queue of images runs: connections stay open between them
            req = requests.pop(0)  # let go once sent, as a queue's runs are: its uploads with it
            before = [server.handler_seconds for server in bfl.servers]
            wall = timed_generate(bfl, provider, req)
            spent = [server.handler_seconds - earlier for server, earlier in zip(bfl.servers, before)]
            walls.append(wall - sum(spent))
            served = [total + seconds for total, seconds in zip(served, spent)]
    finally:
        del provider.submit, provider.fetch  # back to the class's methods
        runner.decode_image = decode
    tasks = list(bfl.tasks.values())[first_task:]
    encodes += [encode_limit(request(size, seed, references, upload_format)) for seed in range(1, count + 1)]
    limits = {"encode": statistics.median(encodes),
              "transfer": loopback_seconds(body_bytes) + loopback_seconds(len(render_result(size, size, 1, "png"))),
              "decode": phases.seconds["decode"] / count}
    api, _, delivery = served
    parts = {"submit (encode + upload)": (phases.seconds["submit"] - api) / count,
             "pickup": statistics.mean(t.ready_at - (t.created + t.plan.latency) for t in tasks),
             "download": (phases.seconds["download"] - delivery) / count, "decode": limits["decode"],
             "the stand-in, taken out": sum(served) / count}
    return statistics.median(walls) - LATENCY, parts, limits


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


def shared_references(bfl: FakeBfl, provider: BflProvider) -> None:
    """A batch of 4 whose items share two 4 MP references against one request with them: each
    reference is encoded once for the whole batch, so the limit is 1.0. The stand-in parses every
    body in this process too (same cores, same GIL); its share is printed beside the ratio."""
    def two_references() -> tuple[InputImage, ...]:
        return tuple(InputImage(photo_like(2048, 2048)) for _ in range(2))

    stand_in = Phases()
    handle = bfl.api.handler
    bfl.api.handler = stand_in.wrap("submit", handle)
    try:
        one = timed_generate(bfl, provider, FlexRequest(prompt="bench", width=1024, height=1024, seed=600,
                                                        images=two_references()))
        parsing_one = stand_in.seconds.pop("submit")
        shared = FlexRequest(prompt="bench", width=1024, height=1024, seed=700, images=two_references())
        bfl.plans.extend(TaskPlan(latency=LATENCY) for _ in range(4))
        start = time.perf_counter()
        generate_batch([prepare(item, provider) for item in seeded_requests(shared, 4)], provider)
        wall = time.perf_counter() - start
    finally:
        bfl.api.handler = handle
    print(f"batch of 4 sharing two 4 MP references over one request with them: {wall / one:.2f} (limit 1.0; "
          f"the stand-in spent {stand_in.seconds['submit']:.2f} s taking the 4 bodies in, {parsing_one:.2f} s the one)")


RSS_LIMITS = {"png": 1.5, "jpeg": 1.3}  # peak RSS per 4 MP reference over its pixels (issue 23)


def peak_memory(bfl: FakeBfl) -> None:
    """Peak RSS of a whole `flux-flex generate` process with 8 reference files of 4 MP, over a
    bare Python process's (one that has loaded nothing), per reference, as a multiple of its raw
    pixels: the pixels themselves, the decoding, the encoding, the body and the imports all count."""
    with tempfile.TemporaryDirectory() as folder:
        files = []
        for index in range(8):
            files.append(Path(folder) / f"reference-{index}.png")
            Image.fromarray(photo_like(2048, 2048)).save(files[-1], compress_level=1)
        env = {**os.environ, "BFL_API_KEY": bfl.api_key, "FLUX_FLEX_BFL_URL": bfl.api_url, "XDG_CACHE_HOME": folder}
        bare = _peak_rss([sys.executable, "-c", "pass"], env)
        raw = 2048 * 2048 * 3
        for upload_format in ("png", "jpeg"):
            bfl.plans.append(TaskPlan(latency=LATENCY))
            command = [str(Path(sys.executable).with_name("flux-flex")), "generate", "--prompt", "memory",
                       "--width", "256", "--height", "256", "--seed", "3", "--out", f"{folder}/out.png",
                       "--upload-format", upload_format, *(f"--reference={path}" for path in files)]
            per_reference = (_peak_rss(command, env) - bare) / len(files) / raw
            print(f"peak RSS of the command line with 8 x 4 MP references, {upload_format} uploads: "
                  f"{per_reference:.2f}x the pixels per reference ({per_reference / RSS_LIMITS[upload_format]:.2f} of "
                  f"the {RSS_LIMITS[upload_format]:g}x limit; counted over a bare Python process's peak)")


# A child's peak RSS counts what its parent held when it forked, so a small Python process starts
# the measured one and reports its peak (and exit code) as wait4 gives them.
_RSS_PROBE = """import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(usage.ru_maxrss, os.waitstatus_to_exitcode(status))"""


def _peak_rss(command: list[str], env: dict[str, str]) -> int:
    """Peak RSS in bytes of one process running `command`, started from a small Python process."""
    probe = subprocess.run([sys.executable, "-c", _RSS_PROBE, *command], env=env, check=True, capture_output=True,
                           text=True)
    peak_kib, code = map(int, probe.stdout.split()[-2:])
    if code:
        raise RuntimeError(f"{command[0]} exited with {code}")
    return peak_kib * 1024


def flat_image(width: int, height: int) -> np.ndarray:
    """A screenshot or typography: flat colours and text, which compresses many times better."""
    picture = Image.new("RGB", (width, height), (245, 240, 230))
    draw = ImageDraw.Draw(picture)
    for top in range(0, height, 40):
        draw.text((20, top), "FLEX COAST typography 0123456789 " * 8, fill=(20, 30, 90))
    draw.rectangle((width // 4, height // 4, width // 2, height // 2), fill=(200, 40, 40))
    return np.asarray(picture)


ENCODER_SETTINGS = {
    **{f"level {level}": {"format": "PNG", "compress_level": level} for level in (0, 1, 3, 6)},
    "jpeg q95": {"format": "JPEG", "quality": 95}, "webp q95": {"format": "WEBP", "quality": 95},
}


def zlib_levels() -> None:
    """PNG encode time and size at zlib levels 0, 1, 3 and 6 (Pillow's default), photographic
    and flat 4 MP images; JPEG and WebP at quality 95 for scale. What PNG_COMPRESS_LEVEL follows."""
    for label, pixels in (("photographic", photo_like(2048, 2048)), ("flat", flat_image(2048, 2048))):
        figures = []
        for name, options in ENCODER_SETTINGS.items():
            runs = []
            for _ in range(3):  # the median of three: single encodes vary by 20% on a busy machine
                buffer = io.BytesIO()
                start = time.perf_counter()
                Image.fromarray(pixels).save(buffer, **options)
                runs.append(time.perf_counter() - start)
            figures.append(f"{name} {statistics.median(runs):.3f} s, {len(buffer.getvalue()) / pixels.nbytes:.3f}")
        print(f"encoding a {label} 4 MP image (seconds, size over the raw pixels; uploads use level "
              f"{PNG_COMPRESS_LEVEL}): " + "; ".join(figures))


# Issue 13's scheduling figures: polling, the shared task cap and the cache path ---------------------
# The stand-in answers "Task not found" this long after a submit. BFL's own window was measured
# at under a second, but third-party clients retry it for the first few seconds: 1.5 s outlasts
# the first poll (after 1 s) of a 2 s task, the case that once cost every later task a third poll.
BFL_LAG = 1.5
POLL_LIMIT, PICKUP_LIMIT, CACHE_HIT_LIMIT, CLI_HIT_LIMIT = 2, 0.3, 0.1, 1.5
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
        env = {**_compiled_env(Path(folder, "bytecode")), "BFL_API_KEY": bfl.api_key, "FLUX_FLEX_BFL_URL": bfl.api_url,
               "XDG_CACHE_HOME": folder}
        command = [str(Path(sys.executable).with_name("flux-flex")), "generate", "--prompt", "a cached poster",
                   "--width", "1024", "--height", "1024", "--seed", "9", "--out", f"{folder}/out.png",
                   "--cache-dir", f"{folder}/cache"]
        bfl.plans.append(TaskPlan(latency=LATENCY))
        subprocess.run(command, env=env, check=True, capture_output=True)  # the miss that stores the image
        [stored] = Path(folder, "cache").glob("*.png")
        floor_program = "import sys; from PIL import Image; Image.open(sys.argv[1]).save(sys.argv[2])"
        floor_command = [sys.executable, "-c", floor_program, str(stored), f"{folder}/floor.png"]
        copy_command = [sys.executable, "-c", COPY_FLOOR_PROGRAM, str(stored), f"{folder}/copy.png"]
        for warm_up in (command, floor_command, copy_command):  # compiles the bytecode the measured runs load
            subprocess.run(warm_up, env=env, check=True, capture_output=True)
        runs, floor, copies, cpu = [], [], [], []
        for _ in range(15):  # alternating, so a change in the machine's load reaches both alike
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(command, env=env, check=True, capture_output=True)
            runs.append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            start = time.perf_counter()
            subprocess.run(floor_command, env=env, check=True)
            floor.append(time.perf_counter() - start)
            start = time.perf_counter()
            subprocess.run(copy_command, env=env, check=True)
            copies.append(time.perf_counter() - start)
    hit, least, copy = statistics.median(runs), statistics.median(floor), statistics.median(copies)
    print(f"CLI cache hit as a whole process (1 MP, no references): {hit / least:.2f}x the floor, "
          f"{hit / least / CLI_HIT_LIMIT:.2f} of the {CLI_HIT_LIMIT:g}x limit ({hit:.2f} s against {least:.3f} s for a "
          f"Python process that imports Pillow, reads the stored PNG and writes it; medians of 15, alternating, after "
          f"a warm-up run of each, bytecode compiled (as pip installs it) into a temporary folder; "
          f"{statistics.median(cpu):.2f} s of CPU; load average {os.getloadavg()[0]:.2f}); the hit writes the stored "
          f"file without encoding it again: against a process that also only checks it decodes and copies it "
          f"({copy:.3f} s), {hit / copy:.2f}x")


# The least a process does that hands over the stored PNG as the command line's cache hit does:
# import Pillow, decode the file to know it is whole, write its bytes.
COPY_FLOOR_PROGRAM = ("import io, sys; from PIL import Image; data = open(sys.argv[1], 'rb').read(); "
                      "Image.open(io.BytesIO(data)).load(); open(sys.argv[2], 'wb').write(data)")


def _compiled_env(bytecode: Path) -> dict[str, str]:
    """This process's environment for a child that runs as an installed pack does: with bytecode
    compiled (pip compiles it on install), kept in `bytecode` so the repository stays clean, even
    where this shell says PYTHONDONTWRITEBYTECODE."""
    env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPYCACHEPREFIX": str(bytecode)}


def main() -> None:
    with FakeBfl() as bfl:
        provider = BflProvider(base_url=bfl.api_url, api_key=ApiKey(bfl.api_key))
        connections = Connections(bfl)
        overhead(bfl, provider)
        sent = 1 + len(OVERHEAD_CASES) * len(OVERHEAD_FORMATS) * OVERHEAD_REQUESTS  # the warm-up's too
        connections.report(f"{sent} images one after another (3 servers: API, polling, delivery)")
        batch(bfl, provider)
        connections.report("1 image then a batch of 8 at once")
        long_tasks(bfl, provider)
        pickup(bfl)
        cache_hit(bfl, provider)
        shared_references(bfl, provider)
        peak_memory(bfl)
        polling_schedule(bfl, provider)
        cache_hit_figures(bfl, provider)
    shared_cap()
    zlib_levels()


if __name__ == "__main__":
    main()
