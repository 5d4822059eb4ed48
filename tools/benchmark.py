"""Measure the training and evaluation paths on this machine and print the table.

    python tools/benchmark.py [--steps 5] [--repeats 3] [--warmup 2] [--batch-size 128]
                              [--models alexnet ba_alexnet] [--data FILE] [--out output/benchmark.json]
    python tools/benchmark.py --resnet [--large-batch-size 16]   # ResNet-20/50 and BA-ResNet-20/50
    python tools/benchmark.py --quick        # tiny settings: a smoke test, the numbers mean nothing

Rows: train-step images/s per path, end-to-end training with the real data pipeline, eval
(forward on a batch, and the notebook's test-set pass), each against the notebook's way (dygraph,
Paddle's default environment) and as % of the best rate measured in the run (fp32 GEMM of
Paddle, NumPy and PyTorch, and the rows' own rates). When torch is importable, the same AlexNet
written in PyTorch is measured too (train step and eval forward, eager and channels_last) and
our AlexNet rows get "x PyTorch"; without torch those rows are skipped with one line. The
--resnet measures the fast train step and the Paddle Inference forward of ResNet-20 and
BA-ResNet-20 (32 px, batch --batch-size) and ResNet-50 and BA-ResNet-50 (224 px, batch
--large-batch-size), with MACs, parameters and BA's overhead over each plain model. The
method is printed under the table; the JSON holds every repeat. Close other work first: the
figures move with the load of the machine.
"""
import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _tool_setup  # noqa: E402,F401  (the checkout on sys.path, then ba_net, or a one-line error)
from ba_net.bench.benchmark import Settings, run_benchmark  # noqa: E402
from ba_net.bench.table import format_table  # noqa: E402
from ba_net.bench.rows import RESNET_MODELS  # noqa: E402
from ba_net.errors import BaNetError  # noqa: E402
from ba_net.runtime import select_device, setup_logging  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, help="timed steps (or batches) per repeat (default 5)")
    parser.add_argument("--repeats", type=int, help="repeats; the median is reported (default 3)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 2)")
    parser.add_argument("--batch-size", type=int, help="images per batch (default 128)")
    parser.add_argument("--models", nargs="+", help="models to measure (default alexnet ba_alexnet; with --resnet "
                        "resnet20 ba_resnet20 resnet50 ba_resnet50)")
    parser.add_argument("--resnet", action="store_true", help="the ResNet suite: the fast train step and the Paddle "
                        "Inference forward of ResNet-20 / BA-ResNet-20 (32 px) and ResNet-50 / BA-ResNet-50 (224 px, "
                        "batch --large-batch-size), with BA's overhead")
    parser.add_argument("--large-batch-size", type=int, help="batch of the 224 px models (default 16)")
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / "data" / "cifar-10-sample.tar.gz"),
                        help="CIFAR-10 python tarball (default: the sample embedded in data/)")
    parser.add_argument("--workers", type=int, help="loader workers for the fast path's end-to-end training "
                                                    "(default: the config default data.num_workers)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"], help="device (default auto)")
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")
    parser.add_argument("--out", default="output/benchmark.json", help="JSON output (default output/benchmark.json)")
    args = parser.parse_args(argv)
    setup_logging()
    log = logging.getLogger("ba_net.bench.benchmark")
    given = {"steps": args.steps, "repeats": args.repeats, "warmup": args.warmup, "batch_size": args.batch_size,
             "data_file": args.data, "workers": args.workers, "device": args.device,
             "models": tuple(args.models) if args.models else (RESNET_MODELS if args.resnet else None),
             "suite": "resnet" if args.resnet else None, "large_batch_size": args.large_batch_size}
    for key in ("steps", "repeats", "batch_size", "large_batch_size"):
        if given[key] is not None and given[key] < 1:
            log.error("error: --%s must be at least 1", key.replace("_", "-"))
            return 2
    if given["warmup"] is not None and given["warmup"] < 0:
        log.error("error: --warmup must be at least 0")
        return 2
    try:
        select_device(args.device)
        if args.quick:
            settings = Settings.quick_settings(**given)
        else:
            settings = Settings(**{k: v for k, v in given.items() if v is not None})
        result = run_benchmark(settings)
    except (BaNetError, RuntimeError, ValueError) as exc:
        log.error("error: %s", exc)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    result["command"] = " ".join(["python", "tools/benchmark.py"] + list(argv if argv is not None else sys.argv[1:]))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(format_table(result))
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
