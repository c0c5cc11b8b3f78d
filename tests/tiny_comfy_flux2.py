"""Write a tiny random-weight FLUX.2 [klein] in ComfyUI's own file layout, for its standard loaders.

Run with ComfyUI's Python from a ComfyUI checkout: `python tiny_comfy_flux2.py OUT_DIR`. It takes the
key names and shapes from ComfyUI's own model classes, so the files are what its UNETLoader,
CLIPLoader (type flux2) and VAELoader detect as FLUX.2 klein, its Qwen3-4B text encoder and the
FLUX.2 VAE. Exits 3 where this ComfyUI has no FLUX.2.

What ComfyUI 0.33.0 accepts, as found: the diffusion model's size is read from the weights (hidden
size, depth; heads = hidden / 128), so it can be tiny. The VAE's encoder width is fixed (128
channels, 4 levels) but its decoder width is read from the weights. The text encoder's shape is not
read at all: CLIPLoader picks Qwen3-4B by a 2560-wide norm and builds all 36 layers whatever the
file holds. So the file here holds only the small norm weights; the large matrices it leaves out
stay zero (never-written memory), which keeps it small on disk and in memory, but encoding a prompt
still does the full model's arithmetic (about a minute on two CPU cores).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, os.getcwd())
OUT = Path(sys.argv[1])
sys.argv = [sys.argv[0], "--cpu"]

import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import comfy.ldm.flux.model as flux  # noqa: E402
import comfy.ops  # noqa: E402
from comfy.ldm.models.autoencoder import AutoencodingEngine  # noqa: E402

TEXT_WIDTH, TEXT_LAYERS, HEAD = 2560, 36, 128  # Qwen3-4B, fixed in ComfyUI
KLEIN = dict(image_model="flux2", in_channels=128, out_channels=128, vec_in_dim=None, context_in_dim=3 * TEXT_WIDTH,
             hidden_size=HEAD, mlp_ratio=3.0, num_heads=1, depth=1, depth_single_blocks=1, axes_dim=[32, 32, 32, 32],
             theta=2000, patch_size=1, qkv_bias=False, guidance_embed=False, txt_ids_dims=[3],
             global_modulation=True, mlp_silu_act=True, ops_bias=False, default_ref_method="index",
             ref_index_scale=10.0)
VAE = {"double_z": True, "z_channels": 32, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
       "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}


def random_like(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {key: torch.randn(value.shape, generator=generator) * 0.02 for key, value in state.items()}


def diffusion_model() -> dict[str, torch.Tensor]:
    try:
        model = flux.Flux(operations=comfy.ops.manual_cast, dtype=torch.float32, device="cpu", **KLEIN)
    except TypeError:  # a ComfyUI from before FLUX.2: its Flux takes none of FLUX.2's settings
        sys.exit(3)
    return random_like(model.state_dict())


def vae() -> dict[str, torch.Tensor]:
    engine = AutoencodingEngine(
        regularizer_config={"target": "comfy.ldm.models.autoencoder.DiagonalGaussianRegularizer"},
        encoder_config={"target": "comfy.ldm.modules.diffusionmodules.model.Encoder", "params": VAE},
        decoder_config={"target": "comfy.ldm.modules.diffusionmodules.model.Decoder", "params": {**VAE, "ch": 32}})
    state = random_like(engine.state_dict())
    latent = 4 * VAE["z_channels"]  # FLUX.2 packs 2x2 latent patches: what the batch norm below sees
    state.update({"bn.running_mean": torch.zeros(latent), "bn.running_var": torch.ones(latent),
                  "bn.num_batches_tracked": torch.tensor(0),
                  "quant_conv.weight": torch.eye(64).reshape(64, 64, 1, 1), "quant_conv.bias": torch.zeros(64),
                  "post_quant_conv.weight": torch.eye(32).reshape(32, 32, 1, 1), "post_quant_conv.bias": torch.zeros(32)})
    return state


def text_encoder() -> dict[str, torch.Tensor]:
    state = {"model.norm.weight": torch.ones(TEXT_WIDTH)}
    for layer in range(TEXT_LAYERS):
        prefix = f"model.layers.{layer}."
        state.update({prefix + "input_layernorm.weight": torch.ones(TEXT_WIDTH),
                      prefix + "post_attention_layernorm.weight": torch.ones(TEXT_WIDTH),
                      prefix + "self_attn.q_norm.weight": torch.ones(HEAD),
                      prefix + "self_attn.k_norm.weight": torch.ones(HEAD)})
    return state


if __name__ == "__main__":
    for folder, name, build in (("diffusion_models", "flux-2-klein-4b.safetensors", diffusion_model),
                                ("text_encoders", "qwen_3_4b.safetensors", text_encoder),
                                ("vae", "flux2-vae.safetensors", vae)):
        (OUT / folder).mkdir(parents=True, exist_ok=True)
        save_file(build(), str(OUT / folder / name))
