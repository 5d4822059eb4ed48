"""tools/export.py's and tools/predict.py's commands: what they check of their arguments, the call
into :mod:`ba_net.deploy.export` / :mod:`ba_net.deploy.predict`, and what they print."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ba_net.deploy.export import export_run, verify_export
from ba_net.deploy.parity import ParityError, describe_parity
from ba_net.errors import ConfigError, OutputError
from ba_net.files import atomic_write_text

logger = logging.getLogger(__name__)

PREDICTIONS_CSV = "predictions.csv"


def export_command(args: argparse.Namespace) -> int:
    """Export a run (or ``--verify`` an export) and print the parity results; a failed parity
    check is a :class:`ParityError` (exit 1) and leaves nothing written."""
    if bool(args.run_dir) == bool(args.verify):
        raise ConfigError("pass either a run folder to export or --verify EXPORT_DIR")
    if args.verify:
        result = verify_export(args.verify, args.parity_images, args.data_file)
        print(describe_parity(result))
        if result.get("onnx"):
            print(describe_parity(result["onnx"], "ONNX Runtime"))
        return 0
    try:
        spec = export_run(args.run_dir, args.weights, args.out, args.force, args.onnx, args.parity_images,
                          args.data_file)
    except ParityError as exc:
        raise ParityError(f"{exc}; nothing written") from None
    print(f"exported {args.run_dir} ({spec['model']}, seed {spec['seed']}, {spec['weights']}.pdparams) to "
          f"{spec['export_dir']} in {spec['seconds']:.1f} s")
    print(describe_parity(spec["parity"]))
    if spec.get("onnx_parity"):
        print(describe_parity(spec["onnx_parity"], "ONNX Runtime"))
    files = ", ".join(f for f in spec["files"].values() if f)
    t = spec["transform"]
    resize = ", ".join(f"{k} {v}" for k, v in t["resize"].items())
    crop = f", centre crop {t['crop']}" if t.get("crop") else ""
    print(f"files: {files}, export.json (preset {t['preset']}: resize {resize} px {t['interpolation']}{crop}, "
          f"normalize; output: probabilities)")
    print(f"PaddleX: create_model(model_name={spec['paddlex']['model_name']!r}, model_dir={str(spec['export_dir'])!r}) "
          f"after ba_net.register_paddlex() (docs/paddlex.md)")
    return 0


def predict_command(args: argparse.Namespace) -> int:
    """Classify image files / folders or the test split; write ``<--out>/predictions.csv`` (refused
    when it exists, unless ``--force``) and print the table and the rates."""
    from ba_net.deploy.predict import (file_items, load_classifier, predict_items, predictions_csv, predictions_table,
                                       split_items)

    if args.test_split == bool(args.inputs):
        raise ConfigError("pass image files / folders or --test-split (one of the two)")
    if args.limit is not None and (not args.test_split or args.limit < 1):
        raise ConfigError("--limit N (N >= 1) goes with --test-split")
    if args.data_file and not args.test_split:
        raise ConfigError("--data-file goes with --test-split")
    if args.top_k < 1 or args.batch_size < 1:
        raise ConfigError("-k and --batch-size must be at least 1")
    out = Path(args.out or ".")
    if out.exists() and not out.is_dir():
        raise OutputError(out, "it is a file, not a folder", "pass --out a folder")
    csv_path = out / PREDICTIONS_CSV
    if csv_path.exists() and not args.force:
        raise OutputError(csv_path, "it exists", "pass --force to replace it, or --out another folder")
    items = None if args.test_split else file_items(args.inputs)
    classifier = load_classifier(args.model, args.weights)
    if args.test_split:
        items, source = split_items(args.data_file, classifier.spec.get("data_file"), args.limit,
                                    classifier.spec.get("dataset") or "cifar10")
        logger.info("test split of %s: %d images", source, len(items))
    logger.info("model: %s; transform: preset %s, %d px", classifier.source, classifier.spec["transform"]["preset"],
                classifier.spec["transform"]["image_size"])
    result = predict_items(classifier, items, args.batch_size, args.top_k)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(csv_path, predictions_csv(result))
    if args.show:
        print(predictions_table(result, None if args.show < 0 else args.show))
    truth = [r for r in result["rows"] if r["true_class"]]
    accuracy = (f"; top-1 accuracy {sum(r['top'][0][1] == r['true_class'] for r in truth) / len(truth):.4f}"
                if truth else "")
    skipped = f", {len(result['skipped'])} unreadable file(s) skipped" if result["skipped"] else ""
    print(f"{result['images']} images{skipped} in {result['seconds']:.2f} s: {result['img_s']:.1f} img/s end to end "
          f"(reading, transform, forward; batch {args.batch_size}), {result['forward_img_s']:.1f} img/s forward "
          f"only{accuracy}")
    print(f"predictions (top-{result['k']}) written to {csv_path}")
    return 0


__all__ = ["PREDICTIONS_CSV", "export_command", "predict_command"]
