"""Local-backend benchmark: load time, one generation and peak GPU memory per offload mode (a script, not a test).

With a CUDA GPU and a real FLUX.2 folder (diffusers layout), each offload mode is loaded from cold
and run once at 1024x1024; the figures are what the option tooltips' memory numbers rest on.
Without a GPU it runs the tiny random-weight pipelines from the tests on the CPU, which proves the
code path end to end but says nothing about real-size speed or memory.

Run: python bench/bench_local.py --model /path/to/FLUX.2-klein-4B [--modes none,model,group]
     python bench/bench_local.py            (tiny pipelines on the CPU, a few seconds)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from comfyui_flux2_flex.nodes.engine.errors import FluxFlexError  # noqa: E402
from comfyui_flux2_flex.nodes.engine.local import (  # noqa: E402
    OFFLOAD, LocalModel, LocalOptions, PipelineCache, choose_device, generate_local, identify_model, prepare_local,
)
from comfyui_flux2_flex.nodes.engine.request import FlexRequest  # noqa: E402
from comfyui_flux2_flex.nodes.engine.runner import RunHooks  # noqa: E402

GIB = 1024**3


@dataclass(frozen=True)
class Figures:
    mode: str
    load_s: float
    generate_s: float
    step_s: float | None  # mean of the steps after the first (the first includes warm-up)
    peak_gpu_gib: float | None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a FLUX.2 [dev] or [klein] folder in diffusers format")
    parser.add_argument("--modes", default=",".join(OFFLOAD.choices), help="offload modes to time, comma-separated")
    parser.add_argument("--size", type=int, default=1024, help="output width and height (default 1024)")
    parser.add_argument("--steps", type=int, help="default: 4 for distilled klein, 28 otherwise")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--quantization", default="none")
    args = parser.parse_args(argv)
    device = choose_device()
    if device.type != "cuda":
        print(f"No CUDA GPU here ({device.type}): running the tiny random-weight pipelines on the CPU instead. "
              "Real-size figures (1024x1024, GB of VRAM) need a GPU and a real model folder.")
        return run_tiny()
    if args.model is None:
        parser.error("--model is required on a GPU machine")
    model = identify_model(args.model)
    steps = args.steps or (4 if model.kind == "klein" and model.distilled else 28)
    print(f"{model.label} on {torch.cuda.get_device_name()}: {args.size}x{args.size}, {steps} steps, "
          f"dtype {args.dtype}, quantization {args.quantization}")
    rows = [measure(model, LocalOptions(args.dtype, mode, args.quantization), args.size, steps)
            for mode in args.modes.split(",")]
    print_table([row for row in rows if row is not None])
    return 0


def run_tiny() -> int:
    from tiny_flux2_pipelines import build_tiny_flux2_dev, build_tiny_flux2_klein

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for build in (build_tiny_flux2_dev, build_tiny_flux2_klein):
            model = identify_model(build(Path(folder) / build.__name__.removeprefix("build_")))
            print(f"{model.label}: 64x64, 2 steps (model offload skipped: it needs a GPU)")
            rows.extend(measure(model, LocalOptions(offload=mode), 64, 2, label=f"{model.name} {mode}")
                        for mode in ("none", "group"))
    print_table([row for row in rows if row is not None])
    return 0


def measure(model: LocalModel, options: LocalOptions, size: int, steps: int, label: str = "") -> Figures | None:
    """Load from cold, then run once; a mode that does not fit is reported and skipped."""
    cache = PipelineCache()
    step_times: list[float] = []
    hooks = RunHooks(on_progress=lambda fraction, status: step_times.append(time.perf_counter())
                     if status.startswith("step") else None)
    request = FlexRequest(prompt="a red fox in the snow, photograph", width=size, height=size, steps=steps, seed=0,
                          prompt_upsampling=False)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:
        started = time.perf_counter()
        cache.get(model, options)
        loaded = time.perf_counter()
        generate_local(prepare_local(request, model), model, options, hooks=hooks, cache=cache)
        finished = time.perf_counter()
    except FluxFlexError as error:
        print(f"  {options.offload}: failed: {error}")
        return None
    finally:
        cache.free()
    step_s = (step_times[-1] - step_times[0]) / (len(step_times) - 1) if len(step_times) > 1 else None
    peak = torch.cuda.max_memory_allocated() / GIB if torch.cuda.is_available() else None
    return Figures(label or options.offload, loaded - started, finished - loaded, step_s, peak)


def print_table(rows: list[Figures]) -> None:
    print(f"{'mode':<28}{'load s':>9}{'generate s':>12}{'s/step':>9}{'peak GPU GiB':>14}")
    for row in rows:
        step = f"{row.step_s:.3f}" if row.step_s is not None else "-"
        peak = f"{row.peak_gpu_gib:.1f}" if row.peak_gpu_gib is not None else "-"
        print(f"{row.mode:<28}{row.load_s:>9.2f}{row.generate_s:>12.2f}{step:>9}{peak:>14}")


if __name__ == "__main__":
    sys.exit(main())
