"""Collections as tables: the manifest schema and readers of public dataset formats.

- :mod:`xmr.data.manifest` — ``read_manifest``, ``write_manifest``, ``validate_manifest``
  (one schema: ``id, split, audio, image, caption`` + metadata; CSV, JSONL, Parquet);
- :mod:`xmr.data.readers` — COCO captions, Karpathy splits (Flickr30K/COCO), AudioCaps and Clotho
  files turned into manifests (``read_dataset(name, ...)``).

Submodules are imported on demand so that importing :mod:`xmr.data` stays cheap.
"""
