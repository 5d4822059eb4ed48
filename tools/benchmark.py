"""Measure the training and evaluation paths on this machine and print the table.

    python tools/benchmark.py [--steps 5] [--repeats 3] [--warmup 2] [--batch-size 128]
                              [--models alexnet ba_alexnet] [--data-file FILE] [--out output]
    python tools/benchmark.py --resnet [--large-batch-size 16]   # ResNet-20/50 and BA-ResNet-20/50
    python tools/benchmark.py --quick        # tiny settings: a smoke test, the numbers mean nothing
    python tools/benchmark.py --loader DATA_DIR [--batch-size 32]   # loader img/s per worker count

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
figures move with the load of the machine. Writes DIR/benchmark.json (--out DIR, default output).
--loader DATA_DIR measures only the data pipeline: decode + augment (imagenet preset, 224 px) of
the JPEG files of an image folder's train split, in images/s for 0, 1, 2, 4, ... loader workers up
to the usable cores, to size data.num_workers; it writes DIR/loader.json.
Exit codes: 0 done, 1 a measurement could not be taken, 2 bad input, 130 Ctrl-C, 143 SIGTERM.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _tool_setup  # noqa: E402,F401  (the checkout on sys.path, then ba_net, or a one-line error)
from ba_net import cli  # noqa: E402
from ba_net.bench.benchmark import benchmark_command  # noqa: E402
from ba_net.bench.loader import loader_command  # noqa: E402


def main(argv=None) -> int:
    parser = cli.parser(__doc__)
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
    cli.add_data_file(parser, "default: the CIFAR-10 sample embedded in data/")
    parser.add_argument("--workers", type=int, help="loader workers for the fast path's end-to-end training "
                                                    "(default: the config default data.num_workers)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"], help="device (default auto)")
    parser.add_argument("--loader", metavar="DATA_DIR", help="measure only the loader: decode + augment images/s "
                        "per worker count on the image folder DATA_DIR (train/ and val/, or train_list.txt); "
                        "--batch-size default 32")
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")
    cli.add_out(parser, "benchmark.json; default output")
    args = parser.parse_args(argv)
    args.command = " ".join(["python", "tools/benchmark.py"] + list(argv if argv is not None else sys.argv[1:]))
    return cli.run(loader_command if args.loader else benchmark_command, args)


if __name__ == "__main__":
    sys.exit(main())
