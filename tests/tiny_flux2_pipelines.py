"""Tiny random-weight FLUX.2 pipelines, built offline, for the local backend's tests.

diffusers' own FLUX.2 test fixtures build tiny models but download their tokenizers from a hub,
so they cannot run here. These helpers build every component from a config in code
(a byte-level BPE tokenizer with no merges, text encoders of hidden size 16, a 4-block VAE,
a 1+1-layer transformer) and ``save_pretrained`` the pipeline into a folder. The folder then
loads exactly like a user's model folder:
``DiffusionPipeline.from_pretrained(folder, local_files_only=True)``.

Each folder is under 1 MB and its weights are deterministic (fixed torch seed).
The text encoders keep the real layer counts (Mistral3: 30, Qwen3: 27) so the pipelines'
default ``text_encoder_out_layers`` work unchanged.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKLFlux2,
    FlowMatchEulerDiscreteScheduler,
    Flux2KleinPipeline,
    Flux2Pipeline,
    Flux2Transformer2DModel,
)
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    Mistral3Config,
    Mistral3ForConditionalGeneration,
    MistralConfig,
    PixtralVisionConfig,
    PreTrainedTokenizerFast,
    Qwen2Tokenizer,
    Qwen3Config,
    Qwen3ForCausalLM,
)

SEED = 0
HIDDEN = 16  # text encoder width; the pipelines stack 3 layers -> joint_attention_dim 48

DEV_SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[IMG]"]
KLEIN_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Mistral-style template; content may be a string or a list of {"type": "text", "text": ...} parts.
DEV_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['content'] is string %}{% set t = m['content'] %}"
    "{% else %}{% set t = m['content'] | map(attribute='text') | join('') %}{% endif %}"
    "{% if m['role'] == 'system' %}[SYSTEM_PROMPT]{{ t }}[/SYSTEM_PROMPT]"
    "{% elif m['role'] == 'user' %}[INST]{{ t }}[/INST]"
    "{% else %}{{ t }}{{ eos_token }}{% endif %}{% endfor %}"
)

# Qwen3-style template; the klein pipeline passes enable_thinking=False.
KLEIN_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}"
    "{% endif %}"
)

# FLUX.1-dev's scheduler values.
SCHEDULER_CONFIG = {
    "base_image_seq_len": 256,
    "base_shift": 0.5,
    "max_image_seq_len": 4096,
    "max_shift": 1.15,
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
}


def _byte_level_vocab(special_tokens: list[str]) -> dict[str, int]:
    """The 256 byte-level symbols followed by the special tokens."""
    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    return {token: index for index, token in enumerate(symbols + special_tokens)}


def _dev_tokenizer() -> PreTrainedTokenizerFast:
    vocab = _byte_level_vocab(DEV_SPECIAL_TOKENS)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(DEV_SPECIAL_TOKENS)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        chat_template=DEV_CHAT_TEMPLATE,
    )


def _klein_tokenizer() -> Qwen2Tokenizer:
    return Qwen2Tokenizer(
        vocab=_byte_level_vocab(KLEIN_SPECIAL_TOKENS),
        merges=[],
        chat_template=KLEIN_CHAT_TEMPLATE,
    )


def _mistral3_text_encoder(tokenizer: PreTrainedTokenizerFast) -> Mistral3ForConditionalGeneration:
    text_config = MistralConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=30,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=HIDDEN // 2,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
    )
    vision_config = PixtralVisionConfig(
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
    )
    config = Mistral3Config(
        text_config=text_config,
        vision_config=vision_config,
        image_token_index=tokenizer.convert_tokens_to_ids("[IMG]"),
    )
    torch.manual_seed(SEED)
    return Mistral3ForConditionalGeneration(config).eval()


def _qwen3_text_encoder(tokenizer: Qwen2Tokenizer) -> Qwen3ForCausalLM:
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=27,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=HIDDEN // 2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(SEED)
    return Qwen3ForCausalLM(config).eval()


def _vae() -> AutoencoderKLFlux2:
    """4 blocks (a real 8x downscale), 4 latent channels -> 16 channels after 2x2 patching."""
    torch.manual_seed(SEED)
    return AutoencoderKLFlux2(
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=64,
    ).eval()


def _transformer(guidance_embeds: bool) -> Flux2Transformer2DModel:
    torch.manual_seed(SEED)
    return Flux2Transformer2DModel(
        in_channels=16,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=3 * HIDDEN,
        timestep_guidance_channels=32,
        axes_dims_rope=(4, 4, 4, 4),
        guidance_embeds=guidance_embeds,
    ).eval()


def _scheduler() -> FlowMatchEulerDiscreteScheduler:
    return FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG)


def build_tiny_flux2_dev(folder: Path) -> Path:
    """Write a tiny FLUX.2 [dev] (``Flux2Pipeline``) model folder and return it.

    The tokenizer is a bare fast tokenizer instead of ``PixtralProcessor`` (which needs
    torchvision); the pipeline only calls its ``apply_chat_template``.
    """
    tokenizer = _dev_tokenizer()
    pipe = Flux2Pipeline(
        scheduler=_scheduler(),
        vae=_vae(),
        text_encoder=_mistral3_text_encoder(tokenizer),
        tokenizer=tokenizer,
        transformer=_transformer(guidance_embeds=True),
    )
    pipe.save_pretrained(folder)
    return Path(folder)


def build_tiny_flux2_klein(folder: Path, distilled: bool = True) -> Path:
    """Write a tiny FLUX.2 [klein] (``Flux2KleinPipeline``) model folder and return it.

    ``distilled`` is saved as ``"is_distilled"`` in ``model_index.json``: distilled klein ignores
    ``guidance_scale``; base klein runs classifier-free guidance when ``guidance_scale > 1``.
    """
    tokenizer = _klein_tokenizer()
    pipe = Flux2KleinPipeline(
        scheduler=_scheduler(),
        vae=_vae(),
        text_encoder=_qwen3_text_encoder(tokenizer),
        tokenizer=tokenizer,
        transformer=_transformer(guidance_embeds=False),
        is_distilled=distilled,
    )
    pipe.save_pretrained(folder)
    return Path(folder)
