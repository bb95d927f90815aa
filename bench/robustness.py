"""Robustness of audio<->score retrieval to real input: clean queries against degraded ones.

    nice -n 5 python bench/robustness.py --checkpoint checkpoints/demo \\
        --manifest assets/demo/manifest.parquet [--media-dir data/corpus] \\
        [--max-queries 100] [--max-candidates N] [--seed 0] [--index assets/demo/index] [--json out.json]

For the test split of a demo-corpus manifest, the candidates (all items of the split, or a seeded
sample of ``--max-candidates``) are embedded clean, as an index holds them: images with
``model.encode``, audio with the index's windowing (``xmr.index.query.embed_audio``). A seeded
sample of ``--max-queries`` of them is then queried through the one query path
(``xmr.index.query.encode_query``), clean and degraded, and scored with
``xmr.eval.retrieval_metrics`` (MRR, R@1, R@10; chance = the same under a random ranking). With
``--index``, each candidate's score is corrected by that index's hubness offset as its search
corrects it for that query's bank (``IndexStore.item_shift``, ``EncodedQuery.banks``: a 4 s
clip's is the clips' bank; ``xmr index hubness``), so the table is what the app ranks; without
it, plain cosines. Media
files come from ``--media-dir`` when built there, else they are rendered into the cache
(``xmr.data.corpus.media_path``; slow for a whole split on a small machine).

Degradations (deliberately other implementations and parameters than the training augmentation
of ``xmr.media.augment``, so that they are not its training distribution):

audio -> image
  * white noise at 10 dB SNR (NumPy Gaussian noise scaled to the clip's power);
  * room reverb: convolution (SciPy) with a synthetic room impulse response (direct path, early
    reflections, exponentially decaying diffuse tail, RT60 0.6 s, 50 % wet) - training uses Freeverb;
  * telephone band: 6th-order Butterworth band-pass 300-3400 Hz and resampling to 8 kHz and back;
  * lossy codec: Opus through libsndfile (SoundFile) at its highest compression (about 20 kbit/s
    at 16 kHz) - training uses LAME MP3 and GSM;
  * the unseen soundfont (the manifest's ``audio_unseen``: TimGM6mb, never heard in training);
  * +1 semitone (Rubber Band pitch shift, tempo kept): *should* score lower - another piece;
  * phone through a speaker: small-speaker high-pass at 400 Hz with soft clipping, a smaller room
    (RT60 0.35 s), noise at 20 dB SNR, telephone band at 8 kHz, Opus;
  * 4-second clips from a seeded random offset of each item (the R@10 column is the top-10 rate).

image -> audio
  * phone photo: the page on a grey table, a perspective warp with a small rotation (PIL), lens
    blur, uneven light (a linear gradient times a vignette), sensor noise, JPEG quality 40, decoded
    from the JPEG bytes;
  * two more photos of the same kind at other sizes: a close-up (the page at 2.5 times the
    engraving's size, as a phone camera's pixels give it; a darker table, rotation up to 4
    degrees) and a smaller one (0.8 times, from further away or a low-resolution camera; rotation
    up to 5 degrees), so that reading the staff size is measured, not only finding the page;
  * the left half of the score (the image cut at half its width);
  * another engraving: the same bars re-engraved by Verovio in another SMuFL font (Leland instead
    of Leipzig) broken into two systems (the corpus draws one), rasterised like the corpus.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

AUDIO_ROWS = ("clean", "noise 10 dB SNR", "room reverb (convolution)", "telephone 300-3400 Hz",
              "lossy codec (Opus)", "unseen soundfont", "+1 semitone", "phone through a speaker",
              "4 s clips")
IMAGE_ROWS = ("clean", "phone photo", "phone photo, close-up", "phone photo, smaller", "left half",
              "another engraving")


# ---------------------------------------------------------------- audio degradations
def _rng(seed: int, index: int, salt: int) -> np.random.Generator:
    return np.random.default_rng([seed, index, salt])


def add_noise(x: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    noise = rng.standard_normal(len(x)).astype(np.float32)
    power = float(np.mean(x.astype(np.float64) ** 2)) or 1e-12
    noise *= np.sqrt(power / 10 ** (snr_db / 10) / float(np.mean(noise.astype(np.float64) ** 2)))
    return (x + noise).astype(np.float32)


def room_ir(sr: int, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room impulse response: direct path, six early reflections in the first 40 ms,
    then Gaussian noise decaying by 60 dB over ``rt60`` seconds, darker as it decays."""
    from scipy.signal import butter, sosfilt

    n = int(rt60 * sr)
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * 10 ** (-3 * t / rt60)
    tail = sosfilt(butter(2, 4000, fs=sr, output="sos"), tail) * 0.3
    ir = np.zeros(n)
    ir[0] = 1.0
    for delay, gain in zip(rng.uniform(0.004, 0.04, 6), rng.uniform(0.2, 0.6, 6), strict=True):
        ir[int(delay * sr)] += gain * rng.choice([-1.0, 1.0])
    ir[int(0.01 * sr):] += tail[int(0.01 * sr):]
    return ir / np.sqrt(np.sum(ir ** 2))


def reverb(x: np.ndarray, sr: int, rng: np.random.Generator, *, rt60: float, wet: float) -> np.ndarray:
    from scipy.signal import fftconvolve

    y = fftconvolve(x, room_ir(sr, rt60, rng))[:len(x)]
    y = (1 - wet) * x + wet * y * (np.std(x) / (np.std(y) or 1.0))
    return y.astype(np.float32)


def telephone(x: np.ndarray, sr: int) -> np.ndarray:
    from scipy.signal import butter, resample_poly, sosfilt

    y = sosfilt(butter(6, [300, 3400], btype="bandpass", fs=sr, output="sos"), x)
    return resample_poly(resample_poly(y, 8000, sr), sr, 8000)[:len(x)].astype(np.float32)


def opus(x: np.ndarray, sr: int) -> tuple[np.ndarray, float]:
    """Encode and decode with Opus (libsndfile); returns the decoded clip and the bit rate in kbit/s."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(x, -1, 1), sr, format="OGG", subtype="OPUS", compression_level=0.95)
    kbps = len(buf.getvalue()) * 8 / (len(x) / sr) / 1000
    buf.seek(0)
    y, rate = sf.read(buf, dtype="float32")
    assert rate == sr
    return (y[:len(x)] if len(y) >= len(x) else np.pad(y, (0, len(x) - len(y)))), kbps


def pitch_shift(x: np.ndarray, sr: int, semitones: float) -> np.ndarray:
    import pedalboard

    return pedalboard.time_stretch(x[None].astype(np.float32), sr, pitch_shift_in_semitones=semitones)[0]


def phone_speaker(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    from scipy.signal import butter, sosfilt

    y = sosfilt(butter(2, 400, btype="highpass", fs=sr, output="sos"), x)
    y = np.tanh(2.0 * y / (np.max(np.abs(y)) or 1.0)) * 0.5  # a small speaker driven hard
    y = reverb(y.astype(np.float32), sr, rng, rt60=0.35, wet=0.4)
    y = telephone(add_noise(y, 20.0, rng), sr)
    return opus(y, sr)[0]


# ---------------------------------------------------------------- image degradations
def phone_photo(img, rng: np.random.Generator, *, size: float = 1.0, tilt: float = 2.0, table: int = 110):
    """JPEG bytes of a phone photo of a printed score image (grayscale PIL image): the page at
    ``size`` times the image's pixels, rotated up to ``tilt`` degrees, on a table of grey ``table``."""
    from PIL import Image, ImageFilter

    if size != 1.0:
        img = img.resize((max(1, round(img.width * size)), max(1, round(img.height * size))),
                         Image.Resampling.LANCZOS if size < 1.0 else Image.Resampling.BICUBIC)
    w, h = img.size
    margin = int(0.12 * max(w, h))
    page = Image.new("L", (w + 2 * margin, h + 2 * margin), 235)
    page.paste(img.point(lambda v: v * 235 // 255), (margin, margin))  # the score printed on the page
    canvas = Image.new("L", (page.width + 2 * margin, page.height + 2 * margin), table)
    canvas.paste(page, (margin, margin))
    cw, ch = canvas.size
    # perspective: move each corner by up to 6 % of the size (a hand-held camera, slightly rotated)
    src = np.array([[0, 0], [cw, 0], [cw, ch], [0, ch]], float)
    dst = src + rng.uniform(-0.06, 0.06, (4, 2)) * [cw, ch]
    angle = np.radians(rng.uniform(-tilt, tilt))
    centre = np.array([cw / 2, ch / 2])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = (dst - centre) @ rot.T + centre
    coeffs = _perspective_coeffs(dst, src)  # output pixel -> input pixel
    photo = canvas.transform((cw, ch), Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BICUBIC,
                             fillcolor=90)
    photo = photo.filter(ImageFilter.GaussianBlur(radius=1.2))
    arr = np.asarray(photo, np.float32)
    yy, xx = np.mgrid[0:ch, 0:cw]
    direction = rng.uniform(0, 2 * np.pi)
    ramp = ((xx - cw / 2) * np.cos(direction) + (yy - ch / 2) * np.sin(direction)) / max(cw, ch)
    vignette = 1 - 0.35 * (((xx - cw / 2) / cw) ** 2 + ((yy - ch / 2) / ch) ** 2)
    arr = arr * (0.8 + 0.35 * ramp) * vignette + rng.normal(0, 6.0, arr.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=40)
    return buf.getvalue()


def _perspective_coeffs(out_pts: np.ndarray, in_pts: np.ndarray) -> list[float]:
    rows, rhs = [], []
    for (x, y), (u, v) in zip(out_pts, in_pts, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    return np.linalg.solve(np.asarray(rows, float), np.asarray(rhs, float)).tolist()


def left_half(img):
    return img.crop((0, 0, max(1, img.width // 2), img.height))


def another_engraving(row):
    """The item's bars engraved by Verovio in the Leland font, in two systems, rasterised as the
    corpus rasterises (cropped to the ink, 256 px high)."""
    import re

    import verovio
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    from xmr.data.corpus import render
    from xmr.data.corpus.excerpts import load_piece, make_excerpt

    tune = int(row["tune"])
    score = load_piece(str(row["source"]), tune if tune >= 0 else None)
    excerpt = make_excerpt(score, int(row["measure_start"]), int(row["measure_end"]))
    xml = GeneralObjectExporter(excerpt).parse().decode("utf-8")
    verovio.enableLog(verovio.LOG_OFF)
    tk = verovio.toolkit()
    base = {"scale": render.VEROVIO_SCALE, "breaks": "none", "header": "none", "footer": "none",
            "adjustPageHeight": True, "adjustPageWidth": True}
    tk.setOptions(base)
    tk.loadData(xml)
    width = float(re.search(r'width="([0-9.]+)px"', tk.renderToSVG(1)).group(1))
    tk.setOptions({**base, "font": "Leland", "breaks": "auto", "adjustPageWidth": False,
                   "pageWidth": int(width / (render.VEROVIO_SCALE / 100) * 0.6)})
    tk.loadData(xml)
    return render.rasterize(tk.renderToSVG(1))


# ---------------------------------------------------------------- scoring
def _metrics(queries: np.ndarray, query_ids: list[str], cands: np.ndarray, cand_ids: list[str],
             shift: np.ndarray | None = None) -> dict:
    from xmr.eval import retrieval_metrics

    relevant = np.asarray(query_ids)[:, None] == np.asarray(cand_ids)[None, :]
    scores = queries @ cands.T - (0.0 if shift is None else np.atleast_2d(shift))  # (N,) or (Q, N)
    m = retrieval_metrics(scores, relevant, ks=(1, 10))
    return {"MRR": m["MRR"], "R@1": m["R@1"], "R@10": m["R@10"], "chance MRR": m["chance"]["MRR"],
            "queries": len(query_ids), "candidates": len(cand_ids)}


def main() -> None:
    import pandas as pd
    import torch

    import xmr
    from xmr.data.corpus import media_path
    from xmr.errors import InputError
    from xmr.index.query import embed_audio, encode_query
    from xmr.media.audio import load_audio
    from xmr.media.image import load_image

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="checkpoints/demo")
    parser.add_argument("--manifest", default="assets/demo/manifest.parquet")
    parser.add_argument("--media-dir", default=None, help="folder with built audio/, image/, audio_unseen/")
    parser.add_argument("--split", default="test")
    parser.add_argument("--max-queries", type=int, default=100)
    parser.add_argument("--max-candidates", type=int, default=None, help="default: the whole split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip", nargs="*", default=[], help="row names to leave out")
    parser.add_argument("--index", default=None, help="an index folder built by the checkpoint: correct "
                        "the candidates' scores by its hubness offsets, as its search does")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    t_start = time.time()

    model = xmr.load_model(args.checkpoint)
    sr = int(model.sample_rate)
    df = pd.read_parquet(args.manifest)
    df = df[df["split"] == args.split].reset_index(drop=True)
    pick = np.random.default_rng(args.seed)
    if args.max_candidates and args.max_candidates < len(df):
        df = df.iloc[np.sort(pick.choice(len(df), args.max_candidates, replace=False))].reset_index(drop=True)

    def log(msg: str) -> None:
        print(f"[{time.time() - t_start:6.0f} s] {msg}", file=sys.stderr, flush=True)

    def path(i: int, modality: str) -> Path:
        return media_path(df.iloc[i], modality, manifest_dir=args.media_dir)

    # items whose media cannot be rendered with the installed corpus code are left out (and counted)
    log(f"{len(df)} items; loading the images (rendering what is missing)")
    images, keep = [], []
    for i in range(len(df)):
        try:
            images.append(load_image(path(i, "image")))
            keep.append(i)
        except InputError as err:
            log(f"left out: {err}")
    dropped = len(df) - len(keep)
    df = df.iloc[keep].reset_index(drop=True)
    n_q = min(args.max_queries, len(df))
    q_rows = np.sort(pick.choice(len(df), n_q, replace=False))
    ids = [str(x) for x in df["id"]]
    q_ids = [ids[i] for i in q_rows]
    log(f"{len(df)} candidates ({dropped} left out), {n_q} queries; embedding the candidates")
    cand_img = np.concatenate([model.encode("image", images[k:k + 64]) for k in range(0, len(images), 64)])
    log("images embedded")
    waves = {}
    cand_aud = []
    for k in range(0, len(df), 32):
        batch = [load_audio(path(i, "audio"), sample_rate=sr) for i in range(k, min(k + 32, len(df)))]
        for j, w in enumerate(batch):
            if k + j in set(q_rows.tolist()):
                waves[k + j] = w
        cand_aud += [t.vector for t in embed_audio(model, batch)]
    cand_aud = np.stack(cand_aud)
    log("audio embedded")
    store = None
    if args.index:
        from xmr.index import IndexStore

        store = IndexStore.load(args.index, fingerprint=model.fingerprint)
        log("hubness offsets: " + ", ".join(f"{n} {store.info[n].get('hubness', 'none')}"
                                            for n in ("image", "audio")))

    def shift(name: str, queries) -> np.ndarray | None:
        """(Q, N) what the index's search subtracts for each query (its bank: a short clip's is
        ``audio:part``), or None without an index."""
        if store is None:
            return None
        of = {key: store.item_shift(name, ids, key) for key in {b for q in queries for b in q.banks}}
        return np.stack([of[next(iter(q.banks))] for q in queries])

    def audio_row(name: str, degrade) -> dict:
        queries = [encode_query(model, audio=degrade(i, waves[i])) for i in q_rows]
        return _metrics(np.stack([q.vector for q in queries]), q_ids, cand_img, ids, shift("image", queries))

    def image_row(name: str, degrade) -> dict:
        queries = [encode_query(model, image=degrade(i, images[i])) for i in q_rows]
        return _metrics(np.stack([q.vector for q in queries]), q_ids, cand_aud, ids, shift("audio", queries))

    kbps: list[float] = []

    def codec(i, w):
        y, rate = opus(w, sr)
        kbps.append(rate)
        return y

    def clip4(i, w):
        n = 4 * sr
        start = int(_rng(args.seed, i, 9).integers(0, max(1, len(w) - n) + 1))
        return w[start:start + n]

    audio_fns = {
        "clean": lambda i, w: w,
        "noise 10 dB SNR": lambda i, w: add_noise(w, 10.0, _rng(args.seed, i, 1)),
        "room reverb (convolution)": lambda i, w: reverb(w, sr, _rng(args.seed, i, 2), rt60=0.6, wet=0.5),
        "telephone 300-3400 Hz": lambda i, w: telephone(w, sr),
        "lossy codec (Opus)": codec,
        "unseen soundfont": lambda i, w: load_audio(path(i, "audio_unseen"), sample_rate=sr),
        "+1 semitone": lambda i, w: pitch_shift(w, sr, 1.0),
        "phone through a speaker": lambda i, w: phone_speaker(w, sr, _rng(args.seed, i, 3)),
        "4 s clips": clip4,
    }
    image_fns = {
        "clean": lambda i, img: img,
        "phone photo": lambda i, img: phone_photo(img, _rng(args.seed, i, 4)),
        "phone photo, close-up": lambda i, img: phone_photo(img, _rng(args.seed, i, 5), size=2.5, tilt=4.0,
                                                            table=70),
        "phone photo, smaller": lambda i, img: phone_photo(img, _rng(args.seed, i, 6), size=0.8, tilt=5.0),
        "left half": lambda i, img: left_half(img),
        "another engraving": lambda i, img: another_engraving(df.iloc[i]),
    }
    results: dict[str, dict] = {}
    for name in AUDIO_ROWS:
        if name not in args.skip:
            results[f"audio→image: {name}"] = audio_row(name, audio_fns[name])
            log(f"audio {name}: MRR {results[f'audio→image: {name}']['MRR']:.3f}")
    for name in IMAGE_ROWS:
        if name not in args.skip:
            results[f"image→audio: {name}"] = image_row(name, image_fns[name])
            log(f"image {name}: MRR {results[f'image→audio: {name}']['MRR']:.3f}")

    print(f"Robustness on split `{args.split}` of {args.manifest}: {len(df)} candidates ({dropped} left "
          f"out: media that could not be rendered), {n_q} queries (seed {args.seed}), checkpoint "
          f"{args.checkpoint}, " + (f"hubness offsets of {args.index}" if args.index else "plain cosines")
          + f"; {time.time() - t_start:.0f} s")
    if kbps:
        print(f"Opus bit rate: {np.mean(kbps):.1f} kbit/s on average")
    print()
    print("| query | MRR | × clean | R@1 | R@10 | queries | candidates | chance MRR |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for key, m in results.items():
        clean = results.get(key.split(":")[0] + ": clean", {}).get("MRR")
        ratio = f"{m['MRR'] / clean:.2f}" if clean else "-"
        print(f"| {key} | {m['MRR']:.3f} | {ratio} | {m['R@1']:.3f} | {m['R@10']:.3f} | {m['queries']} | "
              f"{m['candidates']} | {m['chance MRR']:.4f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
