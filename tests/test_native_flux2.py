"""Generate and Edit on ComfyUI's own FLUX.2 nodes: the subgraph each setting maps to, without ComfyUI.

The same plan runs inside ComfyUI (test_comfyui_native.py checks it against a real ComfyUI's node
definitions and runs it); here every mapping is told as a user's story.
"""

from __future__ import annotations

import pytest
import torch

from comfyui_flux2_flex.nodes.engine.errors import InvalidRequestError
from comfyui_flux2_flex.nodes.logic.native_flux2 import (
    AUTO, DEV, KLEIN_BASE, KLEIN_DISTILLED, KLEIN_KV, REFERENCE_LATENTS_NODE, NativeModel, NativeSources, choose_kind,
    expand_native, upstream_model_file,
)
from comfyui_flux2_flex.nodes.logic.node_runs import NodeSettings, build_requests
from comfyui_flux2_flex.nodes.logic.references import collect_references
from native_graph import RecordingBuilder

SOURCES = NativeSources(model=["unet", 0], clip=["clip", 0], vae=["vae", 0], image=["load", 0], references=["refs", 0])


def settings(**changes) -> NodeSettings:
    base = dict(provider="bfl", prompt='a poster that says "FLEX"', width=512, height=384, seed=42, steps=20,
                guidance=4.0)
    return NodeSettings(**{**base, **changes})


def expand(kind: str, node_settings: NodeSettings | None = None, *, template_defaults: bool = True,
           **args) -> tuple[RecordingBuilder, str]:
    builder = RecordingBuilder()
    run = expand_native(builder, node_settings or settings(), NativeModel("9", kind, f"{kind} (test)", template_defaults),
                        SOURCES, **args)
    decode = builder.source(run.images)
    assert decode["class_type"] in ("VAEDecode", "ImageBatch")
    return builder, run.report


def image(frames: int, height: int, width: int) -> torch.Tensor:
    return torch.rand(frames, height, width, 3, generator=torch.Generator().manual_seed(frames))


def test_dev_maps_guidance_to_flux_guidance_steps_to_the_flux2_scheduler_and_batch_to_one_latent() -> None:
    graph, report = expand(DEV, settings(batch_size=3))
    (guidance,) = graph.of("FluxGuidance")
    assert guidance["guidance"] == 4.0 and graph.source(guidance["conditioning"])["inputs"]["text"].startswith("a poster")
    (guider,) = graph.of("BasicGuider")
    assert guider["model"] == ["unet", 0] and graph.source(guider["conditioning"])["class_type"] == "FluxGuidance"
    assert not graph.of("CFGGuider")
    assert graph.of("Flux2Scheduler") == [{"steps": 20, "width": 512, "height": 384}]
    assert graph.of("EmptyFlux2LatentImage") == [{"width": 512, "height": 384, "batch_size": 3}]
    assert graph.of("RandomNoise") == [{"noise_seed": 42}]
    assert graph.of("KSamplerSelect") == [{"sampler_name": "euler"}]
    assert "guidance 4 -> FluxGuidance" in report and "Flux2Scheduler" in report
    assert "image i is not reproduced alone by seed+i" in report
    assert "not used on this path: provider bfl, safety_tolerance" in report and "key_name" in report
    assert "$" not in report, "a local run costs nothing"


def test_distilled_klein_ignores_guidance_and_says_so() -> None:
    graph, report = expand(KLEIN_DISTILLED)
    assert not graph.of("FluxGuidance") and not graph.of("CFGGuider")
    assert len(graph.of("BasicGuider")) == 1 and len(graph.of("CLIPTextEncode")) == 1
    assert "guidance 4 ignored: a distilled klein" in report


def test_base_klein_uses_guidance_as_cfg_with_an_empty_negative_and_references_on_both() -> None:
    refs = collect_references([("image_1", image(1, 64, 96)), ("image_2", image(1, 80, 80))])
    graph, report = expand(KLEIN_BASE, references=refs, template_defaults=False)
    (guider,) = graph.of("CFGGuider")
    assert guider["cfg"] == 4.0
    for side, text in (("positive", 'a poster that says "FLEX"'), ("negative", "")):
        applied = graph.source(guider[side])
        assert applied["class_type"] == REFERENCE_LATENTS_NODE
        assert applied["inputs"]["references"] == ["refs", 0] and applied["inputs"]["vae"] == ["vae", 0]
        assert graph.source(applied["inputs"]["conditioning"])["inputs"]["text"] == text
    assert "CFGGuider cfg 4" in report and "2 reference(s) -> VAEEncode + ReferenceLatent" in report


def test_an_aspect_preset_gives_the_size_a_remote_run_would_send() -> None:
    preset = settings(aspect_ratio="16:9", megapixels=1.0)
    requests, _ = build_requests(preset)
    graph, report = expand(KLEIN_DISTILLED, preset)
    (latent,) = graph.of("EmptyFlux2LatentImage")
    assert (latent["width"], latent["height"]) == requests[0].output_size()
    assert graph.of("Flux2Scheduler")[0]["width"] == latent["width"]


def test_edit_follows_the_template_the_image_scaled_to_about_1_mp_both_ways_and_first() -> None:
    """Issue 22, finding 7: 768x512 in gives 1248x832 out, as ComfyUI's template makes it."""
    frame = image(1, 512, 768)
    refs = collect_references([("image_1", image(1, 64, 64))])
    graph, report = expand(KLEIN_DISTILLED, edit_image=frame, references=refs)
    (scale,) = graph.of("ImageScaleToTotalPixels")
    assert scale == {"image": ["load", 0], "upscale_method": "nearest-exact", "megapixels": 1.0, "resolution_steps": 1}
    (encode,) = graph.of("VAEEncode")
    assert graph.source(encode["pixels"])["class_type"] == "ImageScaleToTotalPixels"
    assert graph.of("EmptyFlux2LatentImage") == [{"width": 1254, "height": 836, "batch_size": 1}]
    assert graph.of("Flux2Scheduler") == [{"steps": 4, "width": 1254, "height": 836}]
    (edit_reference,) = graph.of("ReferenceLatent")
    assert graph.source(edit_reference["latent"])["class_type"] == "VAEEncode"
    (references,) = graph.of(REFERENCE_LATENTS_NODE)
    assert references["upscale_method"] == "nearest-exact"
    assert graph.source(references["conditioning"])["class_type"] == "ReferenceLatent", "edit image first, then refs"
    assert "output 1248x832: the image to edit scaled to about 1 MP (1254x836" in report
    assert "scaled to 1254x836 (nearest-exact) first" in report and "each scaled to about 1 MP" in report


def test_edit_without_match_input_size_makes_the_size_set_on_the_node() -> None:
    frame = image(1, 750, 1000)
    requests, _ = build_requests(settings(), edit_image=frame, match_input_size=False)
    graph, report = expand(DEV, edit_image=frame, match_input_size=False)
    (latent,) = graph.of("EmptyFlux2LatentImage")
    assert (latent["width"], latent["height"]) == requests[0].output_size() == (512, 384)
    assert graph.of("ImageScaleToTotalPixels")[0]["upscale_method"] == "lanczos", "the [dev] template's method"
    assert "output " not in report.split("\n")[-1]


def test_template_defaults_replace_steps_and_guidance_and_the_report_names_them() -> None:
    """Issue 22, finding 9: distilled klein wants 4 steps, [dev] guidance 4; offered, named, and can be turned off."""
    graph, report = expand(KLEIN_DISTILLED, settings(steps=50, guidance=5.0))
    assert graph.of("Flux2Scheduler")[0]["steps"] == 4
    assert "template defaults of ComfyUI's image_flux2_klein_image_edit_4b_distilled template: steps 4" in report
    assert "the node's 50 steps not used" in report
    graph, report = expand(DEV, settings(steps=50, guidance=5.0))
    assert graph.of("Flux2Scheduler")[0]["steps"] == 20 and graph.of("FluxGuidance")[0]["guidance"] == 4.0
    assert "steps 20, guidance 4" in report and "the node's 50 steps and guidance 5 not used" in report
    graph, report = expand(DEV, settings(steps=50, guidance=5.0), template_defaults=False)
    assert graph.of("Flux2Scheduler")[0]["steps"] == 50 and graph.of("FluxGuidance")[0]["guidance"] == 5.0
    assert "template_defaults off: the node's 50 steps and guidance 5 are used" in report


def test_klein_9b_kv_runs_on_fluxkvcache_as_its_template() -> None:
    """Issue 22, finding 8."""
    assert choose_kind(AUTO, guidance_embed=False, file_name="flux-2-klein-9b-kv-fp8.safetensors")[0] == KLEIN_KV
    graph, report = expand(KLEIN_KV, edit_image=image(1, 512, 768))
    (cache,) = graph.of("FluxKVCache")
    assert cache == {"model": ["unet", 0]}
    (guider,) = graph.of("BasicGuider")
    assert graph.source(guider["model"])["class_type"] == "FluxKVCache"
    assert graph.of("ImageScaleToTotalPixels")[0]["upscale_method"] == "lanczos"
    assert "FluxKVCache on the model" in report


def test_a_local_seed_takes_the_full_64_bit_range() -> None:
    """Issue 22, finding 9: ComfyUI's templates take seeds up to 2^64-1."""
    graph, _ = expand(KLEIN_DISTILLED, settings(seed=2**64 - 1))
    assert graph.of("RandomNoise") == [{"noise_seed": 2**64 - 1}]
    with pytest.raises(InvalidRequestError, match="seed"):
        expand(KLEIN_DISTILLED, settings(seed=2**64 - 2, batch_size=2), edit_image=image(2, 64, 64))


def test_a_bad_value_is_refused_before_any_node_is_planned() -> None:
    builder = RecordingBuilder()
    with pytest.raises(InvalidRequestError, match="guidance"):
        expand_native(builder, settings(guidance=12.0), NativeModel("9", DEV, "dev"), SOURCES)
    with pytest.raises(InvalidRequestError, match="prompt"):
        expand_native(builder, settings(prompt=" "), NativeModel("9", DEV, "dev"), SOURCES)
    assert builder.nodes == {}


def test_the_model_kind_comes_from_the_weights_then_the_file_name_or_the_users_choice() -> None:
    assert choose_kind(AUTO, guidance_embed=True, file_name="flux2_dev_fp8mixed.safetensors")[0] == DEV
    assert choose_kind(AUTO, guidance_embed=False, file_name="flux-2-klein-base-4b.safetensors")[0] == KLEIN_BASE
    assert choose_kind(AUTO, guidance_embed=False, file_name="flux-2-klein-4b-fp8.safetensors")[0] == KLEIN_DISTILLED
    kind, reason = choose_kind(AUTO, guidance_embed=False, file_name=None)
    assert kind == KLEIN_DISTILLED and "set model_kind" in reason
    assert choose_kind(KLEIN_BASE, guidance_embed=False, file_name="flux-2-klein-4b.safetensors")[0] == KLEIN_BASE


def test_the_model_file_is_found_through_a_lora_loader() -> None:
    prompt = {"1": {"inputs": {"unet_name": "sub/flux-2-klein-base-4b.safetensors", "weight_dtype": "default"}},
              "2": {"inputs": {"model": ["1", 0], "lora_name": "style.safetensors", "strength_model": 1.0}}}
    assert upstream_model_file(prompt.get, ["2", 0]) == "sub/flux-2-klein-base-4b.safetensors"
    assert upstream_model_file(prompt.get, ["7", 0]) is None
