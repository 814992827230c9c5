"""``wsol-prepare``: convert ILSVRC / CUB annotations into the wsolevaluation metadata format, and check it.

Subcommands (``wsol-prepare <command> --help`` for every option)::

    wsol-prepare devkit-xml --xml-dir Annotations/CLS-LOC/val --synsets LOC_synset_mapping.txt --out DIR
    wsol-prepare kaggle --csv LOC_val_solution.csv --synsets LOC_synset_mapping.txt --images-dir ILSVRC --out DIR
    wsol-prepare devkit-mat --mat cache_groundtruth.mat --devkit-meta meta_clsloc.mat --synsets ... --out DIR
    wsol-prepare cub --cub-root CUB_200_2011 --split test --out DIR
    wsol-prepare check --root DATASET [--metadata-dir metadata/test] [--num-classes 1000] [--level decode]

Conversions write ``image_ids.txt``, ``class_labels.txt``, ``image_sizes.txt``, ``localization.txt`` (and
``blacklist.txt`` when a blacklist is given) into ``--out``. Every problem is printed as
``file:line: severity: message``; any error makes the exit status 1 and nothing is written, unless
``--skip-bad`` asks to drop the offending images (they are listed). ``--images-dir`` reads image sizes
from the image headers (formats without sizes: Kaggle CSV, ``.mat``, CUB) and checks boxes against them.

``check`` reads the metadata with the reader every dataset factory and ``wsol-score`` use (one rule set), then
checks the image files at ``--level``: ``header`` (default) reads each header (format, size, size limit) and the
file's end marker, which finds truncated JPEG and PNG files without decoding them (0.18 ms per original-size
ILSVRC val JPEG, against 0.16 ms for the header alone; files of other formats, or with bytes after their end
marker, are decoded in full); ``decode`` decodes every image (also corrupt pixel data; 3.8 ms per such JPEG);
``none`` checks the metadata only.

The image and box checks are those of ``wsol-evaluate data=wsol_metadata``: ``--level``, ``--box-tolerance`` and
``--max-image-pixels`` default to ``data.check_files``, ``data.box_tolerance`` and ``data.max_image_pixels`` of
``configs/data/wsol_metadata.yaml`` (their one home), and the image options that have no flag (``alpha``,
``apply_exif_orientation``) are read there too.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from wsol.data.formats import (
    devkit_ids_to_labels,
    infer_devkit_id_map,
    read_blacklist,
    read_cub,
    read_devkit_id_map,
    read_devkit_mat,
    read_devkit_xml,
    read_kaggle_csv,
    read_synsets,
)
from wsol.data.metadata import (
    BLACKLIST,
    CLASS_LABELS,
    IMAGE_IDS,
    IMAGE_SIZES,
    LOCALIZATION,
    AnnotationError,
    Problem,
    collect_metadata,
    read_metadata,
    resolve_metadata_dir,
    write_metadata,
)
from wsol.data.files import check_image_files
from wsol.cli import box_tolerance, positive_int
from wsol.conf import yaml_default
from wsol.data.records import Annotations


def _data_default(key: str) -> object:
    """A data option's default, from the metadata data set's config (``configs/data/wsol_metadata.yaml``): the image
    and box checks of this tool are those of ``wsol-evaluate data=wsol_metadata``, with the same values."""
    return yaml_default("data/wsol_metadata", key)


def _file_checks(args: argparse.Namespace) -> dict[str, object]:
    """The options of ``check_image_files`` besides the level, policy and mask root."""
    return {"box_tolerance": args.box_tolerance, "max_image_pixels": args.max_image_pixels,
            "alpha": _data_default("alpha"), "apply_exif_orientation": _data_default("apply_exif_orientation")}


def _print_problems(problems: Sequence[Problem]) -> None:
    for problem in problems:
        print(problem, file=sys.stderr)


def _summary(annotations: Annotations) -> str:
    boxes = sum(len(record.boxes) for record in annotations.records)
    masks = sum(len(record.mask_paths) for record in annotations.records)
    labels = {record.label for record in annotations.records}
    sized = sum(record.size is not None for record in annotations.records)
    parts = [
        f"{len(annotations)} images",
        f"{boxes} boxes" if boxes or not masks else f"{masks} masks",
        f"{len(labels)} of {annotations.num_classes} classes used",
        f"{sized} with size",
    ]
    if annotations.blacklist:
        parts.append(f"{len(annotations.blacklist)} blacklisted")
    if annotations.skipped:
        parts.append(f"{len(annotations.skipped)} skipped")
    return ", ".join(parts)


def _convert(args: argparse.Namespace, read: Callable[[], Annotations]) -> int:
    """Run a reader with the skip policy (to see every problem), then write or refuse."""
    try:
        annotations = read()
    except AnnotationError as error:
        _print_problems(error.problems)
        print(f"error: {len(error.problems)} problem(s) that cannot be skipped; nothing written", file=sys.stderr)
        return 1
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    problems: list[Problem] = []
    if args.images_dir is not None:
        annotations, problems = check_image_files(annotations, args.images_dir, level="header", on_error="skip",
                                                  mask_root=None, **_file_checks(args))
    errors = len(annotations.skipped)
    for image_id, reason in sorted(annotations.skipped.items()):
        print(f"{reason}  [{image_id}]", file=sys.stderr)
    if errors and not args.skip_bad:
        print(f"error: {errors} image(s) with problems; fix them or pass --skip-bad; nothing written", file=sys.stderr)
        return 1
    if not any(record.size for record in annotations.records) and any(len(r.boxes) for r in annotations.records):
        print("warning: no image sizes (pass --images-dir); image_sizes.txt left empty", file=sys.stderr)
    existing = [name for name in (IMAGE_IDS, CLASS_LABELS, IMAGE_SIZES, LOCALIZATION, BLACKLIST)
                if (Path(args.out) / name).exists()]
    if existing and not args.force:
        print(f"error: {args.out} already holds metadata ({', '.join(existing)}); pass --force to replace it; "
              "nothing written", file=sys.stderr)
        return 1
    try:
        write_metadata(annotations, args.out)
    except OSError as error:
        print(f"error: cannot write {args.out}: {error.strerror or error}; nothing complete was written",
              file=sys.stderr)
        return 1
    print(f"wrote {args.out}: {_summary(annotations)}")
    return 0


def _cmd_devkit_xml(args: argparse.Namespace) -> int:
    def read() -> Annotations:
        wnids = read_synsets(args.synsets)[0]
        id_to_label = devkit_ids_to_labels(read_devkit_id_map(args.devkit_meta), wnids) if args.devkit_meta else None
        if args.label_file and id_to_label is None:
            raise ValueError("--label-file needs --devkit-meta (meta_clsloc.mat, meta.mat or map_clsloc.txt)")
        blacklist = read_blacklist(args.blacklist) if args.blacklist else frozenset()
        return read_devkit_xml(
            args.xml_dir, wnids, label_file=args.label_file, id_to_label=id_to_label, id_template=args.id_template,
            blacklist=blacklist, on_error="skip", box_tolerance=args.box_tolerance,
        )

    return _convert(args, read)


def _cmd_kaggle(args: argparse.Namespace) -> int:
    def read() -> Annotations:
        blacklist = read_blacklist(args.blacklist) if args.blacklist else frozenset()
        return read_kaggle_csv(args.csv, read_synsets(args.synsets)[0], id_template=args.id_template,
                               blacklist=blacklist, on_error="skip", box_tolerance=args.box_tolerance)

    return _convert(args, read)


def _cmd_devkit_mat(args: argparse.Namespace) -> int:
    def read() -> Annotations:
        if args.devkit_meta:
            if not args.synsets:
                raise ValueError("--devkit-meta needs --synsets (the sorted class list) to build labels")
            id_to_label = devkit_ids_to_labels(read_devkit_id_map(args.devkit_meta), read_synsets(args.synsets)[0])
        elif args.reference:
            reference = read_metadata(args.reference, num_classes=args.num_classes, box_tolerance=args.box_tolerance,
                                      max_image_pixels=args.max_image_pixels)
            id_to_label = infer_devkit_id_map(args.mat, reference)
        else:
            raise ValueError("pass --devkit-meta (with --synsets) or --reference METADATA_DIR to map the devkit ids")
        blacklist = read_blacklist(args.blacklist) if args.blacklist else frozenset()
        return read_devkit_mat(args.mat, id_to_label, num_classes=args.num_classes, blacklist=blacklist,
                               on_error="skip", box_tolerance=args.box_tolerance)

    return _convert(args, read)


def _cmd_cub(args: argparse.Namespace) -> int:
    if args.images_dir is None and (Path(args.cub_root) / "images").is_dir():
        args.images_dir = str(Path(args.cub_root) / "images")
    return _convert(args, lambda: read_cub(args.cub_root, args.split, on_error="skip",
                                           box_tolerance=args.box_tolerance))


def _cmd_check(args: argparse.Namespace) -> int:
    root = Path(args.root)
    try:
        meta = resolve_metadata_dir(root, args.split, args.metadata_dir)
        records, problems, blacklist = collect_metadata(meta, num_classes=args.num_classes, box_tolerance=args.box_tolerance,
                                                        max_image_pixels=args.max_image_pixels)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    images = Path(args.images_dir) if args.images_dir else (root / "images" if (root / "images").is_dir() else root)
    bad_ids = {p.image_id for p in problems if p.severity == "error"}
    annotations = Annotations(
        records=[r for r in records if r.image_id not in bad_ids],
        num_classes=args.num_classes or max((r.label for r in records), default=-1) + 1,
        blacklist=frozenset(blacklist),
    )
    has_masks = any(record.mask_paths for record in records)
    if args.level != "none":
        if not images.is_dir():
            problems.append(Problem(str(images), None, "image folder not found"))
        else:
            mask_root = Path(args.mask_root) if args.mask_root else images
            try:
                annotations, file_problems = check_image_files(
                    annotations, images, level=args.level, on_error="skip", mask_root=mask_root if has_masks else None,
                    **_file_checks(args),
                )
            except AnnotationError as error:  # problems no policy skips (a path leaving its root)
                file_problems = error.problems
            problems += file_problems
    _print_problems(problems)
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    print(f"{meta}: {_summary(annotations)}; images under {images}; {errors} error(s), {warnings} warning(s)")
    return 1 if errors else 0


def build_parser() -> argparse.ArgumentParser:
    """The ``wsol-prepare`` argument parser."""
    parser = argparse.ArgumentParser(prog="wsol-prepare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    tolerance, max_pixels = _data_default("box_tolerance"), _data_default("max_image_pixels")

    def checks(command: argparse.ArgumentParser) -> None:
        command.add_argument("--box-tolerance", type=box_tolerance, default=tolerance,
                             help=f"pixels a box may overshoot its image (default {tolerance:g}, data.box_tolerance)")
        command.add_argument("--max-image-pixels", type=positive_int, default=max_pixels,
                             help=f"larger images (width x height) are errors (default {max_pixels}, "
                                  "data.max_image_pixels)")

    def conversion(name: str, help_text: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text)
        command.add_argument("--out", required=True, help="metadata folder to write")
        command.add_argument("--images-dir", help="image root: read sizes from headers and check boxes against them")
        command.add_argument("--skip-bad", action="store_true", help="drop images with problems (listed) instead of failing")
        command.add_argument("--force", action="store_true", help="replace the metadata files already in --out")
        checks(command)
        return command

    xml = conversion("devkit-xml", "ILSVRC devkit XML folder (Annotations/CLS-LOC/val)")
    xml.add_argument("--xml-dir", required=True)
    xml.add_argument("--synsets", required=True, help="class list: LOC_synset_mapping.txt, synset_words.txt or categories1000.mat")
    xml.add_argument("--label-file", help="devkit val ground-truth label file (cross-checked against the XML objects)")
    xml.add_argument("--devkit-meta", help="devkit id map: meta_clsloc.mat, meta.mat or map_clsloc.txt")
    xml.add_argument("--blacklist", help="ILSVRC2014_clsloc_validation_blacklist.txt")
    xml.add_argument("--id-template", default="val/{filename}.JPEG", help="image id from <filename> and <folder>")
    xml.set_defaults(func=_cmd_devkit_xml)

    kaggle = conversion("kaggle", "Kaggle LOC_val_solution.csv + LOC_synset_mapping.txt")
    kaggle.add_argument("--csv", required=True)
    kaggle.add_argument("--synsets", required=True)
    kaggle.add_argument("--blacklist")
    kaggle.add_argument("--id-template", default="val/{}.JPEG", help="image id from ImageId ({wnid}: first box's WNID)")
    kaggle.set_defaults(func=_cmd_kaggle)

    mat = conversion("devkit-mat", "ILSVRC2014 devkit cached ground truth .mat (ILSVRC2014 ids mapped to sorted WNIDs)")
    mat.add_argument("--mat", required=True)
    mat.add_argument("--devkit-meta", help="meta_clsloc.mat or map_clsloc.txt (with --synsets)")
    mat.add_argument("--synsets")
    mat.add_argument("--reference", help="metadata folder of the same images to infer the id map from")
    mat.add_argument("--blacklist")
    mat.add_argument("--num-classes", type=positive_int, default=1000)
    mat.set_defaults(func=_cmd_devkit_mat)

    cub = conversion("cub", "CUB-200-2011 text files (bounding_boxes.txt x y w h -> x0,y0,x0+w,y0+h)")
    cub.add_argument("--cub-root", required=True, help="the CUB_200_2011 folder")
    cub.add_argument("--split", required=True, choices=("train", "test", "all"))
    cub.set_defaults(func=_cmd_cub)

    check = sub.add_parser("check", help="validate a metadata data set: ids, labels, boxes, files, sizes")
    check.add_argument("--root", required=True, help="data set folder (images/ + metadata/)")
    check.add_argument("--split", default="test", help="selects ROOT/metadata/SPLIT when it exists")
    check.add_argument("--metadata-dir", help="metadata folder, relative to ROOT ({split} replaced)")
    check.add_argument("--images-dir", help="image root (default ROOT/images or ROOT)")
    check.add_argument("--mask-root", help="mask root for OpenImages metadata (default: the image root)")
    check.add_argument("--num-classes", type=positive_int, help="labels must lie in [0, N)")
    level = _data_default("check_files")
    check.add_argument("--level", choices=("none", "header", "decode"), default=level,
                       help=f"image check: header (header, size and end-of-file marker, which finds truncated JPEG/PNG "
                            f"at about the cost of the header alone), decode (every pixel; slow) or none (default "
                            f"{level}, data.check_files)")
    checks(check)
    check.set_defaults(func=_cmd_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``wsol-prepare``; returns the exit status (1 if any error was found)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
