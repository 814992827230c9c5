"""Datasets, annotation readers and transforms.

The dataset factories register themselves in ``wsol.data.datasets.DATASETS`` when it is first looked up, so that
importing a reader (``wsol.data.metadata``) does not load torch.
"""
