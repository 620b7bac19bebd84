"""``python -m leaps.tune ...`` (the ``leaps tune`` flags): run it in several processes on one --out to share a tune."""

import argparse
import sys

from .cli import add_tune_arguments, cmd_tune


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leaps.tune", description="Tune LEAPS's inversion options.")
    add_tune_arguments(parser)
    return cmd_tune(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
