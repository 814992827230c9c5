"""An ILSVRC-shaped evaluation set for scale benchmarks (``scripts/bench_scale.py``): the first N val images of the
real ILSVRC2012 ground truth — their sizes, classes and boxes — with synthetic pixels.

    python scripts/make_ilsvrc_like.py --metadata ../shared/data/wsolevaluation_metadata/ILSVRC/test \\
        --n 5000 --out /tmp/ilsvrc_like_5000 [--workers 2]

Image i is a JPEG of val image i's size (``image_sizes.txt``: ILSVRC's size distribution, ~110 kpx on average), of
its class (``class_labels.txt``, 1000 classes) with one ellipse per ground-truth box (``localization.txt``) over a
smooth background. Written as

* ``images/val/ILSVRC2012_val_%08d.JPEG``;
* ``metadata/test/*.txt``: the ground truth in wsolevaluation's metadata form (``wsol.data.metadata.write_metadata``);
* ``Annotations/CLS-LOC/val/ILSVRC2012_val_%08d.xml`` + ``LOC_synset_mapping.txt``: the same in the devkit's XML form
  (class k is the made-up WNID ``n%08d % k``, so the sorted WNIDs keep the label order), which ``wsol-prepare
  devkit-xml`` converts back to the same metadata;
* ``manifest.json``: N, the seed and the SHA-256 of the source metadata files. A folder whose manifest matches is
  reused as is; any other folder is refused unless ``--force`` (then replaced).

Usage as a data set: ``wsol-evaluate data=wsol_metadata data.root=OUT data.num_classes=1000 ...``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from wsol.conf import yaml_data_options
from wsol.data.metadata import IMAGE_IDS, read_metadata, write_metadata
from wsol.data.records import Annotations, ImageRecord

NUM_CLASSES = 1000
SOURCE_FILES = ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt")


def wnid(label: int) -> str:
    """The made-up WNID of class ``label`` (sorted WNIDs = label order, as ILSVRC's class order is)."""
    return f"n{label:08d}"


def _colour(label: int) -> tuple[int, int, int]:
    rng = np.random.default_rng(label)
    return tuple(int(v) for v in rng.integers(40, 256, size=3))


def render(record: ImageRecord, seed: int) -> Image.Image:
    """A smooth random background of the record's size and one class-coloured ellipse per box (inclusive pixels)."""
    width, height = record.size
    rng = np.random.default_rng([seed, int(record.image_id[-13:-5])])
    coarse = rng.integers(0, 160, size=(6, 6, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
    draw = ImageDraw.Draw(image)
    for x0, y0, x1, y1 in np.asarray(record.boxes, dtype=float):
        draw.ellipse([x0, y0, x1, y1], fill=_colour(record.label))
    return image


def devkit_xml(record: ImageRecord) -> str:
    """The devkit's XML for ``record`` (box values verbatim, as every ILSVRC source holds them)."""
    stem = Path(record.image_id).stem
    width, height = record.size
    objects = "".join(
        f"<object><name>{wnid(record.label)}</name><bndbox><xmin>{x0:g}</xmin><ymin>{y0:g}</ymin>"
        f"<xmax>{x1:g}</xmax><ymax>{y1:g}</ymax></bndbox></object>" for x0, y0, x1, y1 in record.boxes)
    return (f"<annotation><folder>val</folder><filename>{stem}</filename><size><width>{width}</width>"
            f"<height>{height}</height><depth>3</depth></size>{objects}</annotation>\n")


def _write_chunk(args: tuple[list[ImageRecord], Path, int]) -> int:
    records, out, seed = args
    for record in records:
        render(record, seed).save(out / "images" / record.image_id, quality=90)
        (out / "Annotations" / "CLS-LOC" / "val" / f"{Path(record.image_id).stem}.xml").write_text(devkit_xml(record))
    return len(records)


def manifest(metadata: Path, n: int, seed: int) -> dict:
    digest = hashlib.sha256()
    for name in SOURCE_FILES:
        digest.update((metadata / name).read_bytes())
    return {"n": n, "seed": seed, "source_sha256": digest.hexdigest()}


def make(metadata: Path, n: int, out: Path, *, seed: int = 0, workers: int = 1, force: bool = False) -> Path:
    """Write the first ``n`` images of ``metadata`` as an ILSVRC-shaped set under ``out`` (see the module doc)."""
    want = manifest(metadata, n, seed)
    done = out / "manifest.json"
    if done.is_file() and json.loads(done.read_text()) == want:
        return out
    if out.exists() and any(out.iterdir()):
        if not force:
            raise SystemExit(f"{out}: exists and is not this set (manifest {done} differs or is missing); "
                             "pass --force to replace it")
        shutil.rmtree(out)
    ids = (metadata / IMAGE_IDS).read_text().split()[:n]
    if len(ids) < n:
        raise SystemExit(f"{metadata / IMAGE_IDS}: {len(ids)} images, fewer than --n {n}")
    keep = set(ids)
    options = yaml_data_options("wsol_metadata")
    annotations = read_metadata(metadata, num_classes=NUM_CLASSES, box_tolerance=options["box_tolerance"],
                                max_image_pixels=options["max_image_pixels"], select=keep.__contains__)
    records = annotations.records
    if any(r.size is None for r in records):
        raise SystemExit(f"{metadata}: image_sizes.txt is needed (the images are made at the real sizes)")
    (out / "images" / "val").mkdir(parents=True)
    (out / "Annotations" / "CLS-LOC" / "val").mkdir(parents=True)
    write_metadata(Annotations(records, NUM_CLASSES), out / "metadata" / "test")
    (out / "LOC_synset_mapping.txt").write_text("".join(f"{wnid(k)} class {k}\n" for k in range(NUM_CLASSES)))
    chunks = [(records[i:i + 256], out, seed) for i in range(0, len(records), 256)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            written = sum(pool.map(_write_chunk, chunks))
    else:
        written = sum(map(_write_chunk, chunks))
    assert written == n, (written, n)
    done.write_text(json.dumps(want, indent=1) + "\n")  # last: a killed run leaves no manifest, so it is redone
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--metadata", type=Path, required=True, help="wsolevaluation metadata/ILSVRC/test")
    parser.add_argument("--n", type=int, required=True, help="the first N images (at most 50,000)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--force", action="store_true", help="replace --out if it holds another set")
    args = parser.parse_args(argv)
    if args.n <= 0:
        parser.error(f"--n must be positive, got {args.n}")
    out = make(args.metadata, args.n, args.out, seed=args.seed, workers=args.workers, force=args.force)
    print(f"{args.n} images in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
