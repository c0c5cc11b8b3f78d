"""The local provider on the CPU, with tiny random-weight FLUX.2 pipelines built offline.

The folders go through the same discovery, completeness check and loading code as a user's model
folder; nothing is downloaded (HF_HUB_OFFLINE=1 is set in conftest). The pipelines are built once
per module and loaded into one shared cache, so the whole file runs in seconds.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from comfyui_flux2_flex.nodes.engine import local
from comfyui_flux2_flex.nodes.engine.backend import LocalBackend, RemoteBackend, backend_for
from comfyui_flux2_flex.nodes.engine.errors import CancelledError, FluxFlexError, InvalidRequestError
from comfyui_flux2_flex.nodes.engine.local import (
    DTYPE, OFFLOAD, QUANTIZE, LoadedPipeline, LocalModel, LocalOptions, PipelineCache, find_models, generate_local,
    identify_model, pipeline_arguments, prepare_local, resolve_model,
)
from comfyui_flux2_flex.nodes.engine.request import FlexRequest, InputImage
from comfyui_flux2_flex.nodes.engine.runner import RunHooks
from comfyui_flux2_flex.nodes.engine.settings import configure
from comfyui_flux2_flex.nodes.logic.node_runs import LocalChoice, NodeSettings, run_settings
from comfyui_flux2_flex.nodes.logic.price_preview import preview_price
from tiny_flux2_pipelines import build_tiny_flux2_dev, build_tiny_flux2_klein

DEV, KLEIN, KLEIN_BASE = "flux2-dev-tiny", "flux2-klein-tiny", "flux2-klein-base-tiny"


@pytest.fixture(scope="module")
def model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models/diffusers folder as a user has it: two FLUX.2 kinds, and folders that are not FLUX.2."""
    root = tmp_path_factory.mktemp("diffusers")
    build_tiny_flux2_dev(root / DEV)
    build_tiny_flux2_klein(root / KLEIN, distilled=True)
    build_tiny_flux2_klein(root / KLEIN_BASE, distilled=False)
    (root / "not-a-model").mkdir()
    (root / "stable-diffusion").mkdir()
    (root / "stable-diffusion" / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    return root


@pytest.fixture(scope="module")
def models(model_root: Path) -> dict[str, LocalModel]:
    return {model.name: model for model in find_models([model_root])}


@pytest.fixture(scope="module")
def pipelines() -> PipelineCache:
    """One cache for the module, as ComfyUI has one per process; tests that count loads make their own."""
    return PipelineCache()


def request(**changes) -> FlexRequest:
    return FlexRequest(**{"prompt": "a red fox", "width": 64, "height": 64, "steps": 2, "seed": 1,
                          "prompt_upsampling": False, **changes})


def run(model: LocalModel, cache: PipelineCache, hooks: RunHooks = RunHooks(), options: LocalOptions = LocalOptions(),
        **changes):
    return generate_local(prepare_local(request(**changes), model), model, options, hooks=hooks, cache=cache)


def copy_of(model: LocalModel, tmp_path: Path) -> Path:
    return Path(shutil.copytree(model.path, tmp_path / model.name))


# Finding and identifying model folders


def test_flux2_folders_are_found_and_told_apart(models, model_root: Path) -> None:
    assert sorted(models) == [DEV, KLEIN_BASE, KLEIN]
    assert models[DEV].kind == "dev"
    assert models[KLEIN].kind == "klein" and models[KLEIN].distilled
    assert not models[KLEIN_BASE].distilled
    assert resolve_model(KLEIN, [model_root]) == models[KLEIN]  # ComfyUI passes the folder name


def test_folders_that_are_not_flux2_are_refused_by_name(model_root: Path) -> None:
    with pytest.raises(FluxFlexError, match="not a diffusers model folder"):
        identify_model(model_root / "not-a-model")
    with pytest.raises(FluxFlexError, match="StableDiffusionPipeline, not FLUX.2"):
        identify_model(model_root / "stable-diffusion")
    with pytest.raises(InvalidRequestError, match="local_model 'flux2-pro' is not in models/diffusers. Put that"):
        resolve_model("flux2-pro", [model_root])


def test_a_missing_published_model_is_named_with_where_to_download_it(model_root: Path) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        resolve_model("FLUX.2-klein-4B", [model_root])
    assert str(refused.value) == (
        "local_model 'FLUX.2-klein-4B' is not in models/diffusers. Download it from "
        "https://huggingface.co/black-forest-labs/FLUX.2-klein-4B into models/diffusers/FLUX.2-klein-4B (for "
        "example: hf download black-forest-labs/FLUX.2-klein-4B --local-dir models/diffusers/FLUX.2-klein-4B), or "
        "pick a model folder you have.")


@pytest.mark.parametrize("choice", ["/etc", "/", "..", ".", "../models", "sub/dir", "..\\windows", "C:models",
                                    ".hidden", " spaced", "", "a\0b"])
def test_a_local_model_that_is_not_a_folder_name_is_refused_before_the_file_system(
        choice: str, model_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    touched: list[str] = []
    for name in ("is_file", "is_dir", "exists", "stat", "iterdir", "glob"):
        original = getattr(Path, name)
        monkeypatch.setattr(Path, name, lambda self, *a, _o=original, _n=name, **k: touched.append(_n) or _o(self, *a, **k))
    with pytest.raises(InvalidRequestError, match="local_model .*a folder name, not a path"):
        resolve_model(choice, [model_root])
    assert touched == [], "nothing on disk is looked at for a refused name"


def test_a_model_outside_the_model_folders_is_not_found_by_a_path(models, model_root: Path, tmp_path: Path) -> None:
    elsewhere = copy_of(models[DEV], tmp_path)
    with pytest.raises(InvalidRequestError, match="local_model"):
        resolve_model(str(elsewhere), [model_root])
    with pytest.raises(InvalidRequestError, match="local_model"):
        resolve_model(elsewhere.name + "-other", [model_root])


# What a run returns


@pytest.mark.parametrize("name", [DEV, KLEIN, KLEIN_BASE])
def test_output_is_rgb_of_the_requested_size_and_the_same_seed_repeats(name, models, pipelines) -> None:
    first = run(models[name], pipelines, width=96, height=64)
    again = run(models[name], pipelines, width=96, height=64)
    other = run(models[name], pipelines, width=96, height=64, seed=2)
    assert first.pixels.shape == (64, 96, 3) and first.pixels.dtype == np.uint8
    assert np.array_equal(first.pixels, again.pixels)
    assert not np.array_equal(first.pixels, other.pixels)
    assert (first.provider, first.seed, first.estimate.usd) == ("local", 1, 0)
    assert first.seconds > 0


def test_the_pipeline_returns_comfyui_image_layout_before_conversion(models, pipelines) -> None:
    """output_type "np" gives [B, H, W, C] float32 in 0..1: what ComfyUI's IMAGE holds."""
    model = models[DEV]
    loaded = pipelines.get(model, LocalOptions())
    images = loaded.pipeline(**pipeline_arguments(request(width=80), model, 1, loaded.device, RunHooks())).images
    assert images.shape == (1, 64, 80, 3) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0


def test_each_request_field_maps_onto_the_pipeline_call(models) -> None:
    reference = InputImage(np.full((64, 96, 3), 7, np.uint8))
    arguments = pipeline_arguments(request(steps=7, guidance=3.5, width=128, height=96, images=(reference,)),
                                   models[DEV], 42, torch.device("cpu"), RunHooks())
    assert {key: arguments[key] for key in ("prompt", "width", "height", "num_inference_steps", "guidance_scale",
                                            "num_images_per_prompt", "output_type")} == {
        "prompt": "a red fox", "width": 128, "height": 96, "num_inference_steps": 7, "guidance_scale": 3.5,
        "num_images_per_prompt": 1, "output_type": "np"}
    assert [image.size for image in arguments["image"]] == [(96, 64)]  # PIL images, as the pipeline requires
    assert arguments["generator"].initial_seed() == 42
    assert pipeline_arguments(request(), models[DEV], 1, torch.device("cpu"), RunHooks())["image"] is None


def test_without_a_seed_one_is_picked_reported_and_reproducible(models, pipelines) -> None:
    picked = run(models[KLEIN], pipelines, seed=None)
    assert picked.seed is not None and f"seed {picked.seed}" in picked.report()
    assert np.array_equal(run(models[KLEIN], pipelines, seed=picked.seed).pixels, picked.pixels)


def test_references_change_the_image_and_set_the_automatic_size(models, pipelines) -> None:
    model = models[DEV]
    reference = InputImage(np.full((80, 112, 3), 200, np.uint8))
    plain = run(model, pipelines)
    guided = run(model, pipelines, images=(reference,))
    assert not np.array_equal(plain.pixels, guided.pixels)
    second = InputImage(np.zeros((64, 64, 3), np.uint8))
    auto = run(model, pipelines, width=None, height=None, images=(reference, second))
    assert auto.pixels.shape == (80, 112, 3)


@pytest.mark.parametrize("height, width", [(32, 200), (64, 600)])
def test_a_reference_the_pipeline_cannot_take_is_refused_by_name(height, width, models) -> None:
    image = InputImage(np.zeros((height, width, 3), np.uint8))
    with pytest.raises(InvalidRequestError, match=rf"input image 2 = '{width}x{height}'.*at least 64 px.*8:1"):
        prepare_local(request(images=(InputImage(np.zeros((64, 64, 3), np.uint8)), image)), models[DEV])


# Guidance and notes


def test_distilled_klein_ignores_guidance_and_says_so(models, pipelines) -> None:
    notes = prepare_local(request(), models[KLEIN]).notes
    assert any("ignores guidance" in note and "4 steps" in note for note in notes)
    low, high = run(models[KLEIN], pipelines, guidance=2.0), run(models[KLEIN], pipelines, guidance=8.0)
    assert np.array_equal(low.pixels, high.pixels)


def test_base_klein_uses_real_guidance(models, pipelines) -> None:
    assert not any("ignores guidance" in note for note in prepare_local(request(), models[KLEIN_BASE]).notes)
    low, high = run(models[KLEIN_BASE], pipelines, guidance=2.0), run(models[KLEIN_BASE], pipelines, guidance=8.0)
    assert not np.array_equal(low.pixels, high.pixels)


def test_notes_name_every_setting_that_has_no_local_meaning(models) -> None:
    large = InputImage(np.zeros((1024, 1536, 3), np.uint8))
    notes = "\n".join(prepare_local(request(prompt_upsampling=True, safety_tolerance=5, output_format="jpeg",
                                            images=(large,)), models[DEV]).notes)
    assert "prompt upsampling" in notes
    assert "safety_tolerance (5)" in notes and "output_format (jpeg)" in notes
    assert "input image 1 (1536x1024) is resized by the pipeline to about 1 MP" in notes
    assert "prompt upsampling" not in "\n".join(prepare_local(request(), models[DEV]).notes)


# Progress, cancellation and memory errors


def test_progress_moves_per_step_and_cancel_stops_the_run(models, pipelines) -> None:
    seen: list[tuple[float | None, str]] = []
    run(models[DEV], pipelines, hooks=RunHooks(on_progress=lambda fraction, status: seen.append((fraction, status))))
    assert seen[-3:] == [(0.0, "running flux2-dev-tiny locally"), (0.5, "step 1/2"), (1.0, "step 2/2")]
    cancel = threading.Event()
    statuses: list[str] = []

    def on_progress(fraction: float | None, status: str) -> None:
        statuses.append(status)
        if fraction:
            cancel.set()  # the user presses cancel after the first step

    with pytest.raises(CancelledError, match="nothing was billed"):
        run(models[DEV], pipelines, hooks=RunHooks(on_progress=on_progress, is_cancelled=cancel.is_set), steps=4)
    assert statuses[-1] == "step 1/4"
    statuses.clear()
    with pytest.raises(CancelledError):  # cancelled while the model was loading: no step runs
        run(models[DEV], pipelines, hooks=RunHooks(on_progress=on_progress, is_cancelled=lambda: True))
    assert not any(status.startswith("step") for status in statuses)


def test_running_out_of_gpu_memory_says_which_option_to_change(models, monkeypatch) -> None:
    def out_of_memory(**arguments):
        raise torch.OutOfMemoryError("CUDA out of memory")

    cache = PipelineCache()
    monkeypatch.setattr(cache, "get", lambda *args, **kwargs: LoadedPipeline(out_of_memory, torch.device("cpu"),
                                                                               torch.float32))
    with pytest.raises(FluxFlexError, match="Out of GPU memory generating with flux2-dev-tiny.*local_offload to model"):
        run(models[DEV], cache)


# The pipeline cache


def test_the_pipeline_is_loaded_once_and_replaced_when_the_key_changes(models) -> None:
    cache = PipelineCache()
    statuses: list[str] = []
    first = cache.get(models[KLEIN], LocalOptions(), on_load=statuses.append)
    assert statuses == [f"loading {KLEIN}"]
    run(models[KLEIN], cache)
    run(models[KLEIN], cache, seed=5)
    assert cache.loads == 1 and first.dtype == torch.float32  # auto on the CPU
    assert cache.get(models[KLEIN], LocalOptions(dtype="bfloat16")).dtype == torch.bfloat16
    assert cache.loads == 2
    cache.get(models[KLEIN], LocalOptions(dtype="bfloat16", offload="group"))
    assert cache.loads == 3
    run(models[KLEIN], cache, options=LocalOptions(dtype="bfloat16", offload="group"))  # group offload runs on the CPU
    assert cache.loads == 3
    cache.free()
    run(models[KLEIN], cache, options=LocalOptions(dtype="bfloat16", offload="group"))
    assert cache.loads == 4


def test_free_releases_the_process_wide_pipeline(models) -> None:
    local.PIPELINES.get(models[KLEIN], LocalOptions())
    loads = local.PIPELINES.loads
    local.free()
    local.PIPELINES.get(models[KLEIN], LocalOptions())
    assert local.PIPELINES.loads == loads + 1
    local.free()


def test_model_offload_needs_a_gpu_and_says_so(models) -> None:
    if torch.cuda.is_available() or torch.backends.mps.is_available():
        pytest.skip("this machine has an accelerator")
    with pytest.raises(InvalidRequestError, match="local_offload = 'model'.*without a GPU"):
        run(models[DEV], PipelineCache(), options=LocalOptions(offload="model"))


def test_unknown_options_are_refused_by_name(models) -> None:
    with pytest.raises(InvalidRequestError, match="local_dtype = 'float8' is not allowed: one of auto, bfloat16"):
        run(models[DEV], PipelineCache(), options=LocalOptions(dtype="float8"))


def test_option_tooltips_state_the_memory_each_choice_needs() -> None:
    assert all(figure in OFFLOAD.help for figure in ("over 80 GB", "about 62 GB", "about 8 GB", "64 GB", "13 GB"))
    assert "about 20 GB" in QUANTIZE.help and "float32 on the CPU" in DTYPE.help


# Incomplete folders and missing packages


def test_an_incomplete_folder_names_what_is_missing_before_loading(models, tmp_path: Path) -> None:
    folder = copy_of(models[KLEIN], tmp_path)
    for weights in (folder / "transformer").glob("*.safetensors"):
        weights.unlink()
    shutil.rmtree(folder / "vae")
    (folder / "text_encoder" / "model.safetensors").write_text("version https://git-lfs.github.com/spec/v1\n")
    cache = PipelineCache()
    with pytest.raises(FluxFlexError, match=r"incomplete: .*vae/ is missing") as error:
        run(identify_model(folder), cache)
    message = str(error.value)
    assert "transformer/ has no weights" in message and "Git LFS pointer" in message
    assert "Nothing is downloaded at run time" in message and cache.loads == 0


def test_a_missing_weight_shard_is_named(models, tmp_path: Path) -> None:
    folder = copy_of(models[KLEIN], tmp_path)
    (folder / "transformer" / "diffusion_pytorch_model.safetensors").rename(
        folder / "transformer" / "diffusion_pytorch_model-00001-of-00002.safetensors")
    weight_map = {"a": "diffusion_pytorch_model-00001-of-00002.safetensors",
                  "b": "diffusion_pytorch_model-00002-of-00002.safetensors"}
    (folder / "transformer" / "diffusion_pytorch_model.safetensors.index.json").write_text(
        json.dumps({"weight_map": weight_map}))
    with pytest.raises(FluxFlexError, match=r"transformer/ lacks 1 of 2 weight shards \(.*00002-of-00002"):
        run(identify_model(folder), PipelineCache())


def test_a_damaged_weight_file_gives_a_load_error_naming_the_folder(models, tmp_path: Path) -> None:
    folder = copy_of(models[KLEIN], tmp_path)
    (folder / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"\0" * 2048)
    with pytest.raises(FluxFlexError, match=f"Could not load the local model {folder}"):
        run(identify_model(folder), PipelineCache())


def test_without_diffusers_the_error_says_how_to_install(models, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "diffusers", None)
    with pytest.raises(FluxFlexError, match=r'pip install "comfyui-flux2-flex\[local\]".*pip install diffusers'):
        run(models[DEV], PipelineCache())


def test_four_bit_without_bitsandbytes_says_how_to_install(models, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    with pytest.raises(FluxFlexError, match="4-bit needs bitsandbytes: pip install bitsandbytes"):
        run(models[DEV], PipelineCache(), options=LocalOptions(quantization="4-bit"))


def test_importing_the_engine_and_nodes_logic_loads_no_diffusers() -> None:
    code = ("import sys; import comfyui_flux2_flex.nodes.engine.local, comfyui_flux2_flex.nodes.engine.cli, "
            "comfyui_flux2_flex.nodes.logic.node_runs; "
            "print(sorted(m for m in ('diffusers', 'transformers', 'accelerate') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"


# Through the nodes' logic and the CLI


def test_local_runs_go_through_the_backend_seam_the_providers_use(models, pipelines) -> None:
    backend = backend_for(models[KLEIN], local_options=LocalOptions(dtype="float32"))
    assert isinstance(backend, LocalBackend) and isinstance(backend_for("fal"), RemoteBackend)
    prepared = [backend.prepare(request(seed=seed)) for seed in (1, 2)]
    backend.check_ready()  # no key to look for
    assert backend.dry_run(prepared[0]).body["seed"] == 1
    assert backend.dry_run(prepared[0]).destination == f"local {models[KLEIN].label}"
    results = LocalBackend(models[KLEIN], LocalOptions(dtype="float32"), pipelines).run_batch(prepared)
    assert [result.seed for result in results] == [1, 2] and results[0].pixels.shape == (64, 64, 3)
    assert results[0].estimate.usd == 0 and not np.array_equal(results[0].pixels, results[1].pixels)


def test_configured_model_roots_let_a_folder_name_choose_the_model(model_root: Path, models) -> None:
    with pytest.raises(InvalidRequestError, match="local_model"):
        backend_for("local", local_model=KLEIN)
    configure(local_model_roots=(model_root,))
    try:
        assert backend_for("local", local_model=KLEIN).model == models[KLEIN]
        assert {model.name for model in find_models()} == {DEV, KLEIN, KLEIN_BASE}
    finally:
        configure()


def test_a_wired_local_model_replaces_the_provider_and_is_free(models) -> None:
    settings = NodeSettings(provider="bfl", prompt="a fox", width=64, height=64, steps=2, seed=3, batch_size=2)
    result = run_settings(settings, RunHooks(), local=LocalChoice(models[DEV]))
    assert tuple(result.images.shape) == (2, 64, 64, 3) and result.images.dtype == torch.float32
    assert "free · 64x64 · seed 3" in result.report and "provider bfl was not used" in result.report
    assert preview_price(settings, local=True).usd_high == 0
    local.free()


def test_the_cli_runs_a_local_model(model_root: Path, tmp_path: Path, capsys) -> None:
    from comfyui_flux2_flex.nodes.engine.cli import main

    out = tmp_path / "local.png"
    assert main(["generate", "--provider", "local", "--local-model", str(model_root / KLEIN),
                 "--prompt", "a fox", "--width", "64", "--height", "64", "--steps", "2", "--seed", "4",
                 "--out", str(out)]) == 0
    assert out.is_file() and "local: free" in capsys.readouterr().out
    assert main(["estimate", "--provider", "local", "--prompt", "x"]) == 1
    assert "local_model" in capsys.readouterr().err
    local.free()
