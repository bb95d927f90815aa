"""Tiny random hub-style model folders (CLAP, AST, wav2vec2, CLIP, SigLIP) for the hub tower tests.

Each writer saves a random model with transformers' ``save_pretrained``, plus its feature extractor
or image processor and (for the text halves) a small word-piece tokenizer, so that the towers load
them through the same ``from_pretrained`` path as real hub ids. Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

from fixtures_models import TINY_WORDS

SAMPLE_RATE = 16000
# One transformer layer, 32 wide: every tiny tower's encoder size.
TINY_LAYERS = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)


def _tokenizer(folder: Path) -> int:
    import transformers

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(TINY_WORDS))
    vocab += [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"] + list("abcdefghijklmnopqrstuvwxyz0123456789.,")
    vocab = list(dict.fromkeys(vocab))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    transformers.BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(
        folder
    )
    return len(vocab)


def write_tiny_clap(folder: Path, *, seed: int = 0, seconds: float = 1.0) -> Path:
    """A tiny ClapModel (audio + text, projection 16) with a 16-bin CLAP feature extractor."""
    import torch
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    n_vocab = _tokenizer(folder)
    audio = transformers.ClapAudioConfig(
        num_mel_bins=16,
        spec_size=64,
        window_size=4,
        patch_size=4,
        patch_stride=(4, 4),
        patch_embeds_hidden_size=16,
        hidden_size=32,
        depths=[1, 1],
        num_attention_heads=[2, 2],
        projection_dim=16,
        enable_fusion=False,
    )
    text = transformers.ClapTextConfig(
        vocab_size=n_vocab,
        **TINY_LAYERS,
        max_position_embeddings=130,
        projection_dim=16,
        pad_token_id=0,
    )
    torch.manual_seed(seed)
    cfg = transformers.ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=16)
    transformers.ClapModel(cfg).save_pretrained(folder)
    transformers.ClapFeatureExtractor(
        feature_size=16,
        sampling_rate=SAMPLE_RATE,
        hop_length=160,
        fft_window_size=256,
        max_length_s=seconds,
        frequency_min=50,
        frequency_max=8000,
        truncation="rand_trunc",
    ).save_pretrained(folder)
    return folder


def write_tiny_ast(folder: Path, *, seed: int = 0) -> Path:
    import torch
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    cfg = transformers.ASTConfig(
        **TINY_LAYERS,
        num_mel_bins=16,
        max_length=100,
    )
    transformers.ASTModel(cfg).save_pretrained(folder)
    transformers.ASTFeatureExtractor(
        num_mel_bins=16, max_length=100, sampling_rate=SAMPLE_RATE
    ).save_pretrained(folder)
    return folder


def write_tiny_wav2vec2(folder: Path, *, seed: int = 0) -> Path:
    import torch
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    cfg = transformers.Wav2Vec2Config(
        **TINY_LAYERS,
        conv_dim=(16, 16),
        conv_stride=(5, 4),
        conv_kernel=(10, 4),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        vocab_size=8,
    )
    transformers.Wav2Vec2Model(cfg).save_pretrained(folder)
    transformers.Wav2Vec2FeatureExtractor(sampling_rate=SAMPLE_RATE).save_pretrained(folder)
    return folder


def write_tiny_clip(folder: Path, *, seed: int = 0) -> Path:
    """A tiny CLIPModel (vision + text, projection 16) with a 32 px CLIP image processor."""
    import torch
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    n_vocab = _tokenizer(folder)
    vision = transformers.CLIPVisionConfig(
        **TINY_LAYERS,
        image_size=32,
        patch_size=8,
        projection_dim=16,
    )
    text = transformers.CLIPTextConfig(
        vocab_size=n_vocab,
        **TINY_LAYERS,
        max_position_embeddings=128,
        projection_dim=16,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
    )
    torch.manual_seed(seed)
    cfg = transformers.CLIPConfig(
        text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=16
    )
    transformers.CLIPModel(cfg).save_pretrained(folder)
    transformers.CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(folder)
    return folder


def write_tiny_siglip(folder: Path, *, seed: int = 0) -> Path:
    import torch
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    n_vocab = _tokenizer(folder)
    vision = transformers.SiglipVisionConfig(
        **TINY_LAYERS,
        image_size=32,
        patch_size=8,
    )
    text = transformers.SiglipTextConfig(
        vocab_size=n_vocab,
        **TINY_LAYERS,
        max_position_embeddings=64,
    )
    torch.manual_seed(seed)
    cfg = transformers.SiglipConfig(text_config=text.to_dict(), vision_config=vision.to_dict())
    transformers.SiglipModel(cfg).save_pretrained(folder)
    transformers.SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder
