"""Fixtures for the models tests and for other areas that need a model.

Nothing is downloaded: text encoders are tiny BERT/CLIP configs with a small vocabulary written
to a temporary folder and loaded back through the same ``from_pretrained`` path as real ones.

* ``tiny_text_dir`` -- a folder with a tiny BERT (2 layers, hidden 32) + its tokenizer.
* ``tiny_model_config`` -- a :class:`xmr.models.ModelConfig` with all three modalities.
* ``tiny_checkpoint`` -- a saved untrained checkpoint of that config (a Path).
"""

from __future__ import annotations

from pathlib import Path

import pytest

TINY_WORDS = """
a an the in of on for and with major minor key chorale reel
jig waltz hymn march song dance tune organ piano fiddle flute strings choir violin
guitar accordion harp voice voices two three four fast slow moderate allegro andante adagio
lively gentle bach mozart haydn beethoven folk irish music score sheet time meter c
d e f g b sharp flat
""".split()  # noqa: SIM905


def write_tiny_text_encoder(folder: Path, *, arch: str = "bert", seed: int = 0) -> Path:
    """Write a tiny text encoder (``arch`` "bert", "clip" or "clap") + a word-piece tokenizer to ``folder``.

    CLIP and CLAP ship BPE tokenizers; a word-piece one keeps the fixture small, and the model code
    path (``CLIPTextModel`` / ``ClapTextModel.from_pretrained``) is the one real checkpoints take."""
    import torch
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(TINY_WORDS))
    vocab += [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"] + list("abcdefghijklmnopqrstuvwxyz0123456789.,")
    vocab = list(dict.fromkeys(vocab))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = transformers.BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    tok.save_pretrained(folder)
    torch.manual_seed(seed)
    if arch == "bert":
        cfg = transformers.BertConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
        )
        model = transformers.BertModel(cfg)
    elif arch == "clip":
        cfg = transformers.CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
            projection_dim=32,
            pad_token_id=0,
            bos_token_id=2,
            eos_token_id=3,  # [CLS], [SEP] of the word-piece vocab
        )
        model = transformers.CLIPTextModel(cfg)
    elif arch == "clap":
        cfg = transformers.ClapTextConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=130,  # RoBERTa-style positions start after the padding index
            projection_dim=32,
            pad_token_id=0,
        )
        model = transformers.ClapTextModel(cfg)
    else:
        raise ValueError(arch)
    model.save_pretrained(folder)
    return folder


def make_tiny_model_config(
    text_dir: Path | None, *, store_text_weights: bool = True, text_arch: str = "auto"
):
    """A ModelConfig with tiny timm towers for audio/image and the tiny text encoder in ``text_dir``."""
    from xmr.models import ModelConfig, TowerConfig
    from xmr.models._media import ImageConfig, SpectrogramConfig

    text = None
    if text_dir is not None:
        text = TowerConfig(
            kind="hf_text",
            backbone=str(text_dir),
            arch=text_arch,
            pooling="pooler" if text_arch in ("clip_text", "clap_text") else "mean",
            head="mlp",
            head_hidden=32,
            frozen=not store_text_weights,
            store_weights=store_text_weights,
        )
    return ModelConfig(
        name="tiny",
        embed_dim=16,
        audio=TowerConfig(kind="timm", backbone="test_efficientnet"),
        image=TowerConfig(kind="timm", backbone="test_efficientnet"),
        text=text,
        spectrogram=SpectrogramConfig(
            sample_rate=8000, kind="logmel", n_fft=256, win_length=256, hop_length=128, n_mels=16
        ),
        image_preprocessing=ImageConfig(size=(32, 64), mode="L", resize="pad"),
        sample_rate=8000,
        audio_window_seconds=1.0,
        text_max_length=32,
    )


@pytest.fixture(scope="session")
def tiny_text_dir(tmp_path_factory) -> Path:
    """A folder with a tiny BERT text encoder and its tokenizer (from_pretrained-loadable)."""
    return write_tiny_text_encoder(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def tiny_model_config(tiny_text_dir):
    """A tiny ModelConfig: audio (log-mel, 8 kHz, 1 s), grayscale 32x64 images, tiny BERT text, D = 16."""
    return make_tiny_model_config(tiny_text_dir)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_model_config) -> Path:
    """A saved untrained tiny checkpoint with audio, image and text towers (no downloads)."""
    import torch

    from xmr.models import create_model, save_checkpoint

    torch.manual_seed(0)
    model = create_model(tiny_model_config)
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny", training={"note": "untrained"})
