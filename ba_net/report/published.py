"""Published ImageNet-1k top-1 accuracies of the models ba-net builds, each with its source, for
compare to show beside our own figures (:func:`published_column`).

* BA models: the official repository's ``results/`` (github.com/zhaoy376/Bridge-Attention at
  4d99540): the best epoch's top-1 on ImageNet val of one 100-epoch run
  (``results/<model>/val_prec1.txt``, ``results/ba_efficientnet-b0/metric.txt``); its recipe is
  the one of ``experiments/imagenet_*.yaml``. It publishes no baseline.
* Baselines: torchvision's documented accuracies of its ``IMAGENET1K_V1`` weights (the model
  pages of pytorch.org/vision), trained with torchvision's recipes (90 epochs and step decay for
  the ResNets: not the BA-Net recipe). The architectures are ours: the same parameter counts.

Only models ba-net builds are listed; a model without a published figure gets none. The figures
are references, never comparisons with a run: they are shown only when the experiment's data is a
1000-class image folder (:func:`imagenet_like`), and even then a run of fewer epochs or another
recipe is not expected to reach them.
"""
from __future__ import annotations

from typing import Optional

BA_NET = "official BA-Net results/"
TORCHVISION = "torchvision docs (weights V1)"
SOURCES = {
    BA_NET: "github.com/zhaoy376/Bridge-Attention results/ (4d99540): ImageNet val top-1 of the best of 100 "
            "epochs, one run",
    TORCHVISION: "pytorch.org/vision model pages, IMAGENET1K_V1 weights: ImageNet val top-1 (torchvision's own "
                 "training recipes)",
}
# model: (top-1 %, as published, source label)
PUBLISHED = {
    "ba_resnet50": (78.854, BA_NET), "ba_resnet101": (80.026, BA_NET), "ba_resnext50_32x4d": (79.578, BA_NET),
    "ba_mobilenetv3_large": (73.506, BA_NET), "ba_mobilenetv3_small": (65.850, BA_NET),
    "ba_efficientnet_b0": (71.704, BA_NET),
    "resnet50": (76.130, TORCHVISION), "resnet101": (77.374, TORCHVISION), "resnet152": (78.312, TORCHVISION),
    "resnext50_32x4d": (77.618, TORCHVISION), "mobilenetv3_large": (74.042, TORCHVISION),
    "mobilenetv3_small": (67.668, TORCHVISION), "efficientnet_b0": (77.692, TORCHVISION),
}
IMAGENET_CLASSES = 1000
HEADER = "published ImageNet top-1 % (reference, not this run)"


def imagenet_like(dataset: str, num_classes: Optional[int]) -> bool:
    """Whether an experiment's data can be ImageNet-1k: an image folder of 1,000 classes."""
    return dataset == "imagefolder" and num_classes == IMAGENET_CLASSES


def published_column(models, dataset: str, num_classes: Optional[int]) -> dict:
    """What compare records about the published figures of ``models``: {'shown': bool, 'models':
    {model: {'top1': %, 'source': label}} (those with a figure), 'sources': {label: where from},
    'note': the method note}. Shown only for :func:`imagenet_like` data."""
    known = {m: {"top1": PUBLISHED[m][0], "source": PUBLISHED[m][1]} for m in models if m in PUBLISHED}
    shown = bool(known) and imagenet_like(dataset, num_classes)
    labels = sorted({v["source"] for v in known.values()})
    if not known:
        note = None
    elif shown:
        note = (f"'{HEADER}': the published figure of each model, a reference from other training runs, not a "
                "result of this experiment (a run of fewer epochs or another recipe does not reach it). Sources: "
                + "; ".join(f"{label}: {SOURCES[label]}" for label in labels) + ".")
    else:
        note = (f"Published ImageNet-1k figures exist for {', '.join(sorted(known))} but are not shown: this "
                f"experiment's data ({dataset}, {num_classes if num_classes is not None else '?'} classes) is not a "
                f"{IMAGENET_CLASSES}-class image folder, so they would compare nothing.")
    return {"shown": shown, "models": known if shown else {}, "sources": {k: SOURCES[k] for k in labels} if shown
            else {}, "note": note}


def published_cell(published: Optional[dict], model: str) -> str:
    """The table cell: 'top-1 (source label)', '–' for a model without a figure."""
    entry = (published or {}).get("models", {}).get(model)
    return "–" if entry is None else f"{entry['top1']:.3f} ({entry['source']})"


__all__ = ["BA_NET", "HEADER", "IMAGENET_CLASSES", "PUBLISHED", "SOURCES", "TORCHVISION", "imagenet_like",
           "published_cell", "published_column"]
