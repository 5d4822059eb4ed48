"""Train the ablation a YAML file in experiments/ describes.

    python tools/train.py -c experiments/quick.yaml [-o key=value ...] [--resume] [--force]
    python tools/train.py --list-models

Runs go to <output_dir>/<experiment>/<model>/seed<seed>/. Finished runs are skipped, so running
the same command again continues an interrupted ablation; --resume continues a run that stopped
mid-way (Ctrl-C, SIGTERM, a crash), --force reruns finished ones from scratch. Data parallel:
python -m paddle.distributed.launch --nproc_per_node 2 tools/train.py -c ...
Exit codes: 0 done, 1 a run failed, 2 bad input, 130 Ctrl-C, 143 SIGTERM.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _tool_setup  # noqa: E402,F401  (the checkout on sys.path, then ba_net, or a one-line error)
from ba_net import cli  # noqa: E402
from ba_net.train.command import train_command  # noqa: E402


def main(argv=None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("-c", "--config", help="experiment YAML file")
    parser.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key by dotted path, value parsed as YAML (repeatable)")
    parser.add_argument("--resume", action="store_true", help="continue runs that stopped mid-way")
    cli.add_force(parser, "finished runs (rerun them from scratch)")
    parser.add_argument("--list-models", action="store_true",
                        help="print every model name with its parameters and input size, and exit")
    return cli.run(train_command, parser.parse_args(argv), interrupted="finished epochs are saved; rerun with "
                   "--resume to continue")


if __name__ == "__main__":
    sys.exit(main())
