"""The bottom floor: plain types and torch-free helpers every other package may import.

* :mod:`bottomup.core.keypoints`: keypoint layouts (names, flip pairs, skeleton, matching order, OKS sigmas);
* :mod:`bottomup.core.io`: atomic JSON writing;
* :mod:`bottomup.core.download`: files fetched by URL into the cache (checksum, atomic, offline mode).

Nothing here imports torch, Hydra / OmegaConf or another ``bottomup`` package (import-linter contracts in
``pyproject.toml``).
"""
