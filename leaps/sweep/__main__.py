"""``python -m leaps.sweep {sweep,summarize} ...`` (what torchrun launches):

    torchrun --nproc-per-node 8 -m leaps.sweep sweep --model slow_r50 --pretrained ...
"""

import argparse
import sys

from .cli import add_summarize_parser, add_sweep_parser, cmd_summarize, cmd_sweep


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leaps.sweep", description="LEAPS sweeps over many stimuli.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_sweep_parser(sub).set_defaults(func=cmd_sweep)
    add_summarize_parser(sub).set_defaults(func=cmd_summarize)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
