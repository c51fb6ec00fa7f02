"""Imagery deep learning: tiles, the transfer CNN, random convolutional features.

Modules (import them directly; this package imports nothing heavy):

* :mod:`~povertymap.models.deep.tiles`: tiles cut around grid cells, masks, band statistics.
* :mod:`~povertymap.models.deep.labels`: nightlight labels per cell and intensity classes.
* :mod:`~povertymap.models.deep.random_features`: MOSAIKS random features (numpy).
* :mod:`~povertymap.models.deep.store`: cell embeddings cached on disk by block.
* :mod:`~povertymap.models.deep.zones`: zone features as overlap-weighted cell means.
* :mod:`~povertymap.models.deep.device`: CPU/GPU precision policy.
* :mod:`~povertymap.models.deep.train`: proxy-task training and cell embedding.
* :mod:`~povertymap.models.deep.cnn` and :mod:`~povertymap.models.deep.data` import
  keras/tensorflow when imported: only ``train`` functions and the feature blocks load them.

The feature blocks built on them are in :mod:`povertymap.features.embeddings`; the method and
measured figures are in ``docs/deep.md``.
"""
