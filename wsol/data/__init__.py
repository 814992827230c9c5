"""Datasets, annotation readers and transforms.

    validation.py    what every reader shares: Problem, the on_error policy, text, label, box and path rules
    metadata.py      wsolevaluation's metadata format (the one reader of wsol-evaluate, wsol-score, wsol-prepare)
    formats.py       the ILSVRC box ground truth users have: devkit XML, Kaggle CSV, the devkit's cached .mat
    devkit.py        the devkit's side files (class lists, id maps, blacklists, label files), the ImageNet train folder
    cub.py           CUB-200-2011's own text files
    ground_truth.py  one dispatcher over the ILSVRC formats, for the ilsvrc and imagenette datasets
    images.py        loading one image file (EXIF, alpha, 16 bit, truncation, size limit)
    files.py         checking a split's image files, and the source that loads them (FileImageSource)
    real.py          registered factories: wsol_metadata, ilsvrc, cub, openimages
    imagenette.py    registered factory: Imagenette2 / Imagewoof2 as a leak-free benchmark
    synthetic.py     registered factory: the generated dataset
    datasets.py      the registry (DATASETS), ImageSource, the training Dataset
    geometry.py records.py masks.py transforms.py   box conventions, records, OpenImages masks, transforms

The dataset factories register themselves in ``wsol.data.datasets.DATASETS`` when it is first looked up, so that
importing a reader (``wsol.data.metadata``) does not load torch.
"""
