"""Datasets, annotation readers and transforms.

Importing this package registers every dataset factory in ``wsol.data.datasets.DATASETS``.
"""

from wsol.data import synthetic as _synthetic  # noqa: F401  (registers "synthetic")
from wsol.data import real as _real  # noqa: F401  (registers "wsol_metadata", "ilsvrc", "cub", "openimages")
from wsol.data import imagenette as _imagenette  # noqa: F401  (registers "imagenette")
