"""The local provider on the CPU, with tiny random-weight FLUX.2 pipelines built offline.

The folders go through the same discovery and loading code as a user's model folder; nothing is
downloaded (HF_HUB_OFFLINE=1 is set in conftest).
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from comfyui_flux2_flex.nodes.engine.errors import CancelledError, FluxFlexError, InvalidRequestError
from comfyui_flux2_flex.nodes.engine.local_backend import (
    LocalOptions, PipelineCache, find_models, generate_local, identify_model, prepare_local,
)
from comfyui_flux2_flex.nodes.engine.request import FlexRequest, InputImage
from comfyui_flux2_flex.nodes.engine.runner import RunHooks
from comfyui_flux2_flex.nodes.node_logic import NodeSettings, estimate_cost, run_settings
from tiny_flux2_pipelines import build_tiny_flux2_dev, build_tiny_flux2_klein


@pytest.fixture(scope="module")
def model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("diffusers")
    build_tiny_flux2_dev(root / "flux2-dev-tiny")
    build_tiny_flux2_klein(root / "flux2-klein-tiny", distilled=True)
    build_tiny_flux2_klein(root / "flux2-klein-base-tiny", distilled=False)
    (root / "not-a-model").mkdir()
    return root


@pytest.fixture(scope="module")
def models(model_root: Path) -> dict[str, object]:
    return {model.name: model for model in find_models([model_root])}


@pytest.fixture(scope="module")
def pipelines() -> PipelineCache:
    return PipelineCache()


def request(**changes) -> FlexRequest:
    return FlexRequest(**{"prompt": "a red fox", "width": 64, "height": 64, "steps": 2, "seed": 1,
                          "prompt_upsampling": False, **changes})


def run(model, pipelines: PipelineCache, hooks: RunHooks = RunHooks(), **changes):
    return generate_local(prepare_local(request(**changes), model), model, hooks=hooks, cache=pipelines)


def test_folders_are_found_and_told_apart(models) -> None:
    assert sorted(models) == ["flux2-dev-tiny", "flux2-klein-base-tiny", "flux2-klein-tiny"]
    assert models["flux2-dev-tiny"].kind == "dev"
    assert models["flux2-klein-tiny"].distilled and not models["flux2-klein-base-tiny"].distilled


@pytest.mark.parametrize("name", ["flux2-dev-tiny", "flux2-klein-tiny", "flux2-klein-base-tiny"])
def test_output_is_rgb_of_the_requested_size_and_the_same_seed_repeats(name, models, pipelines) -> None:
    first = run(models[name], pipelines, width=96, height=64)
    again = run(models[name], pipelines, width=96, height=64)
    other = run(models[name], pipelines, width=96, height=64, seed=2)
    assert first.pixels.shape == (64, 96, 3) and first.pixels.dtype == np.uint8
    assert np.array_equal(first.pixels, again.pixels)
    assert not np.array_equal(first.pixels, other.pixels)
    assert first.estimate.usd == 0 and first.seed == 1


def test_references_change_the_image_and_set_the_automatic_size(models, pipelines) -> None:
    model = models["flux2-dev-tiny"]
    reference = InputImage(np.full((80, 112, 3), 200, np.uint8))
    plain = run(model, pipelines)
    guided = run(model, pipelines, images=(reference,))
    assert not np.array_equal(plain.pixels, guided.pixels)
    auto = run(model, pipelines, width=None, height=None, images=(reference,))
    assert auto.pixels.shape == (80, 112, 3)


def test_a_reference_the_pipeline_cannot_take_is_refused_by_name(models) -> None:
    thin = InputImage(np.zeros((32, 200, 3), np.uint8))
    with pytest.raises(InvalidRequestError, match=r"input image 1 = '200x32'.*at least 64 px"):
        prepare_local(request(images=(thin,)), models["flux2-dev-tiny"])


def test_notes_say_what_does_not_apply_locally(models) -> None:
    notes = prepare_local(request(prompt_upsampling=True), models["flux2-klein-tiny"]).notes
    assert any("prompt upsampling" in n for n in notes) and any("ignores guidance" in n for n in notes)


def test_progress_moves_per_step_and_cancel_stops_the_run(models, pipelines) -> None:
    seen: list[float] = []
    run(models["flux2-dev-tiny"], pipelines, hooks=RunHooks(on_progress=lambda f, s: seen.append(f)))
    assert seen == [0.0, 0.5, 1.0]
    cancel = threading.Event()
    hooks = RunHooks(on_progress=lambda f, s: cancel.set() if f else None, is_cancelled=cancel.is_set)
    with pytest.raises(CancelledError, match="nothing was billed"):
        run(models["flux2-dev-tiny"], pipelines, hooks=hooks, steps=4)


def test_the_pipeline_is_loaded_once_and_replaced_when_the_key_changes(models) -> None:
    cache = PipelineCache()
    run(models["flux2-klein-tiny"], cache)
    run(models["flux2-klein-tiny"], cache, seed=5)
    assert cache.loads == 1
    generate_local(prepare_local(request(), models["flux2-klein-tiny"]), models["flux2-klein-tiny"],
                   LocalOptions(dtype="float32", offload="group"), cache=cache)
    assert cache.loads == 2
    cache.free()
    run(models["flux2-klein-tiny"], cache)
    assert cache.loads == 3


def test_model_offload_needs_a_gpu_and_says_so(models) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(InvalidRequestError, match="local_offload = 'model'.*without a GPU"):
        generate_local(prepare_local(request(), models["flux2-dev-tiny"]), models["flux2-dev-tiny"],
                       LocalOptions(offload="model"), cache=PipelineCache())


def test_bad_folders_give_clear_errors(model_root: Path, tmp_path: Path) -> None:
    with pytest.raises(FluxFlexError, match="not a diffusers model folder"):
        identify_model(model_root / "not-a-model")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text('{"_class_name": "Flux2Pipeline"}')
    with pytest.raises(FluxFlexError, match="Could not load the local model"):
        run(identify_model(broken), PipelineCache())


def test_without_diffusers_the_error_says_how_to_install(models, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "diffusers", None)
    with pytest.raises(FluxFlexError, match=r"comfyui-flux2-flex\[local\]"):
        run(models["flux2-dev-tiny"], PipelineCache())


def test_the_nodes_switch_to_local_by_one_setting(model_root: Path, models) -> None:
    settings = NodeSettings(provider="local", prompt="a fox", width=64, height=64, steps=2, seed=3, batch_size=2,
                            local_model=str(model_root / "flux2-dev-tiny"))
    result = run_settings(settings, RunHooks())
    assert tuple(result.images.shape) == (2, 64, 64, 3) and result.images.dtype == torch.float32
    assert "local: free" in result.report
    assert estimate_cost(settings).usd == 0


def test_the_cli_runs_a_local_model(model_root: Path, tmp_path: Path, capsys) -> None:
    from comfyui_flux2_flex.nodes.engine.cli import main

    out = tmp_path / "local.png"
    assert main(["generate", "--provider", "local", "--local-model", str(model_root / "flux2-klein-tiny"),
                 "--prompt", "a fox", "--width", "64", "--height", "64", "--steps", "2", "--seed", "4",
                 "--out", str(out)]) == 0
    assert out.is_file() and "local: free" in capsys.readouterr().out
    assert main(["estimate", "--provider", "local", "--prompt", "x"]) == 1
    assert "local_model" in capsys.readouterr().err
