"""The one place where untrusted input becomes arrays and tensors.

- :mod:`xmr.media.audio` — decode and validate audio (``load_audio``), mono float32 at a given rate;
- :mod:`xmr.media.features` — log-mel and complex-STFT features (``SpectrogramConfig``,
  ``compute_features``) and deterministic windows for long audio (``fixed_windows``);
- :mod:`xmr.media.image` — decode and validate images (``load_image``), tensors by ``ImageConfig``;
- :mod:`xmr.media.text` — normalise captions and queries (``normalize_text``).

Every error a user can cause is an :class:`xmr.errors.InputError` with a one-line message. The
submodules are imported on demand so that importing :mod:`xmr.media` stays cheap.
"""
