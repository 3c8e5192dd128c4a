"""Tiny randomly initialised caption models for smoke tests and the offline demo.

:func:`build_smoke_models` writes, into one folder, a tiny SmolVLM (Idefics3-style vision tower
+ Llama text model), a tiny Qwen2 causal LM, a tiny open_clip model and a random aesthetic head,
each saved exactly as the real ones are published, and returns a :class:`CaptionJobConfig` that
points at them (marked ``smoke_test``). Their captions are random tokens: they exercise the code
paths, not caption quality. :func:`resolve_preset` picks the laptop preset when its weights are
already in the local Hugging Face cache, otherwise these smoke-test models.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from captioner.config import CaptionJobConfig, load_caption_config

# A small corpus so the trained BPE tokenizer has real English subwords.
_CORPUS = """
A man in a red jacket walks along a sandy beach at sunset while waves roll onto the shore.
The camera slowly pans to the right, revealing a wooden pier and a group of seagulls.
A young woman with long brown hair sits at a table in a bright kitchen and drinks coffee.
A golden retriever runs across a green park, chasing a yellow ball thrown by a child.
Cars drive along a busy city street at night, their headlights reflecting on the wet road.
The sky is overcast and the lighting is soft; trees sway gently in the wind.
Close-up of hands kneading dough on a floured wooden counter, then shaping it into a loaf.
An aerial view of snowy mountains with a winding river in the valley below.
Describe this image in detail. Summarise the frame captions into one video caption.
Second 0: a cat sleeps on a sofa. Second 2: the cat wakes up and stretches its legs.
""".strip()

SPECIALS_VLM = ["<|im_start|>", "<end_of_utterance>", "<image>", "<fake_token_around_image>", "<global-img>", "<|pad|>"]
SPECIALS_LLM = ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]

# SmolVLM's published chat template (images, videos and text in user turns).
SMOLVLM_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
# Qwen2's ChatML template.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def train_tokenizer(special_tokens: list[str], vocab_size: int = 400, byte_level: bool = False):
    """A BPE tokenizer trained with ``tokenizers`` on a small English corpus.

    ``byte_level=False``: SentencePiece-style (Metaspace) pieces, so random models emit English word
    pieces rather than raw bytes. ``byte_level=True``: GPT-2/Qwen2-style byte-level BPE (Qwen2's
    tokenizer class insists on byte-level decoding).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if byte_level:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=special_tokens,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
        )
        tok.train_from_iterator(_CORPUS.splitlines(), trainer=trainer)
        return PreTrainedTokenizerFast(tokenizer_object=tok)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>"] + special_tokens, show_progress=False)
    tok.train_from_iterator(_CORPUS.splitlines(), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")


def build_tiny_vlm(folder: str | Path, seed: int = 0) -> Path:
    """A tiny SmolVLM (vision 32x32 px, 4 image tokens, 2-layer Llama) and its processor."""
    from transformers import (
        LlamaConfig,
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessor,
        SmolVLMProcessor,
        SmolVLMVideoProcessor,
    )

    folder = Path(folder)
    tokenizer = train_tokenizer(SPECIALS_VLM)
    tokenizer.pad_token = "<|pad|>"
    tokenizer.eos_token = "<end_of_utterance>"
    tokenizer.bos_token = "<|im_start|>"
    image_size, patch = 32, 8
    image_processor = SmolVLMImageProcessor(
        do_image_splitting=False, size={"longest_edge": image_size}, max_image_size={"longest_edge": image_size}
    )
    video_processor = SmolVLMVideoProcessor(
        size={"longest_edge": image_size}, max_image_size={"longest_edge": image_size}, do_sample_frames=False
    )
    processor = SmolVLMProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        image_seq_len=(image_size // patch) ** 2 // 4,
        chat_template=SMOLVLM_CHAT_TEMPLATE,
    )
    text_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config = SmolVLMConfig(
        text_config=text_config.to_dict(),
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            image_size=image_size, patch_size=patch,
        ),
        scale_factor=2,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = SmolVLMForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_tiny_llm(folder: str | Path, seed: int = 0) -> Path:
    """A tiny Qwen2 causal LM (2 layers, hidden 32) with a ChatML chat template."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    folder = Path(folder)
    tokenizer = train_tokenizer(SPECIALS_LLM, vocab_size=900, byte_level=True)
    tokenizer.pad_token = "<|endoftext|>"
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.chat_template = CHATML_TEMPLATE
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


TINY_CLIP_CONFIG = {
    "embed_dim": 768,  # ViT-L/14's embedding width, so the aesthetic head's shapes are the real ones
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def build_tiny_clip(folder: str | Path, seed: int = 0) -> Path:
    """A tiny open_clip model saved as ``open_clip_config.json`` + safetensors (load with ``local-dir:``)."""
    import open_clip
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY_CLIP_CONFIG)
    preprocess = {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]}
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP_CONFIG, "preprocess_cfg": preprocess}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return folder


def build_aesthetic_head(path: str | Path, input_size: int = 768, seed: int = 0) -> Path:
    """Random weights for the LAION aesthetic head (same keys as sac+logos+ava1-l14-linearMSE.pth)."""
    from safetensors.torch import save_file

    from captioner.clip_models import AestheticHead

    torch.manual_seed(seed)
    head = AestheticHead(input_size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(head.state_dict(), str(path))
    return path


def build_smoke_models(folder: str | Path, mode: str = "two_stage") -> CaptionJobConfig:
    """Write all tiny models under ``folder`` (reused when already there) and a config using them.

    The config is marked ``smoke_test`` and disables the ``cut_off`` guard (random models never
    finish a sentence; every other check stays on). Thresholds suit random scores: the aesthetic
    threshold is off (score only) and dedup only removes exact-looking repeats (cosine >= 0.999).
    """
    from captioner.config import (
        AestheticConfig,
        CaptionConfig,
        ClipModelConfig,
        ClipScoreConfig,
        ClipStagesConfig,
        DedupConfig,
        GuardConfig,
        HFModelConfig,
        LengthConfig,
    )

    folder = Path(folder)
    builders = {
        "vlm": build_tiny_vlm,
        "llm": build_tiny_llm,
        "clip": build_tiny_clip,
    }
    for name, build in builders.items():
        if not (folder / name / ".complete").exists():
            build(folder / name)
            (folder / name / ".complete").write_text("ok")
    aesthetic = folder / "aesthetic_head.safetensors"
    if not aesthetic.exists():
        build_aesthetic_head(aesthetic)
    guards = GuardConfig(checks=["empty", "repetition", "refusal", "prompt_echo"])
    vlm = HFModelConfig(model=str(folder / "vlm"), batch_size=8, max_new_tokens=24)
    caption = CaptionConfig(
        mode=mode,
        frame_captioner=vlm if mode == "two_stage" else None,
        summariser=HFModelConfig(model=str(folder / "llm"), batch_size=8, max_new_tokens=40) if mode == "two_stage" else None,
        video_captioner=vlm if mode == "one_stage" else None,
        guards=guards,
        length=LengthConfig(),
    )
    return CaptionJobConfig(
        clip=ClipStagesConfig(model=ClipModelConfig(model=f"local-dir:{folder / 'clip'}", pretrained=None)),
        aesthetic=AestheticConfig(weights=str(aesthetic), threshold=None),
        dedup=DedupConfig(threshold=0.999),
        caption=caption,
        clip_score=ClipScoreConfig(),
        smoke_test=True,
    )


# -- presets -------------------------------------------------------------------------------------

PRESETS = {"laptop": "configs/caption/laptop.yaml", "gpu": "configs/caption/gpu.yaml"}


def _hub_cached(repo_id: str, filename: str = "config.json") -> bool:
    """Is ``filename`` of ``repo_id`` in the local Hugging Face cache? (offline, never downloads)"""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename)
    return isinstance(found, str)


def missing_weights(config: CaptionJobConfig) -> list[str]:
    """What ``config`` needs that is neither a local path nor in the local Hugging Face cache."""
    missing = []
    models = []
    if config.caption is not None:
        c = config.caption
        models = [c.frame_captioner, c.summariser] if c.mode == "two_stage" else [c.video_captioner]
    for m in models:
        if not Path(m.model).expanduser().is_dir() and not _hub_cached(m.model):
            missing.append(m.model)
    if config.clip is not None and any(getattr(config, n) is not None for n in ("aesthetic", "dedup", "clip_score")):
        c = config.clip.model
        if c.model.startswith("local-dir:"):
            if not Path(c.model[len("local-dir:"):]).is_dir():
                missing.append(c.model)
        elif c.pretrained and Path(c.pretrained).suffix:
            if not Path(c.pretrained).expanduser().is_file():
                missing.append(c.pretrained)
        elif c.pretrained:
            import open_clip

            hub = (open_clip.get_pretrained_cfg(c.model, c.pretrained) or {}).get("hf_hub", "")
            repo = hub.rstrip("/").split("/")
            repo_id = "/".join(repo[:2]) if len(repo) >= 2 else ""
            if not repo_id or not any(
                _hub_cached(repo_id, f) for f in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
            ):
                missing.append(f"open_clip {c.model}:{c.pretrained}")
    if config.aesthetic is not None and not Path(config.aesthetic.weights).expanduser().is_file():
        missing.append(config.aesthetic.weights)
    return missing


def resolve_preset(name: str = "laptop", smoke_folder: str | Path | None = None) -> tuple[CaptionJobConfig, bool, str]:
    """The named preset when all its weights are local, else the smoke-test models (built if needed).

    Returns (config, is_smoke_test, a plain message saying which and why). Never downloads.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown caption preset {name!r}; expected one of {sorted(PRESETS)}")
    from captioner.config import resolve_path

    config = load_caption_config(resolve_path(PRESETS[name]))
    missing = missing_weights(config)
    if not missing:
        return config, False, f"caption preset {name!r}: all model weights found locally"
    if smoke_folder is None:
        import tempfile

        smoke_folder = Path(tempfile.gettempdir()) / "vidforge-smoke-models"
    smoke = build_smoke_models(smoke_folder)
    message = (
        f"caption preset {name!r} needs weights that are not in the local Hugging Face cache "
        f"({', '.join(missing)}); using tiny RANDOM smoke-test models from {smoke_folder} instead: "
        "the pipeline runs end to end, but the captions and scores are meaningless"
    )
    return smoke, True, message
