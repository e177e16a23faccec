"""Fine-tune CogVideoX into MVideo: `accelerate launch -m mvideo_core.train --config configs/train_example.yaml`.

Parses the one typed config (paper defaults; `--set key=value` overrides) and hands it to the trainer. See
docs/training.md for building the dataset and the latent cache first, and configs/ for DDP, FSDP and DeepSpeed.
"""

from __future__ import annotations

import argparse
import sys

from mvideo_core.training.config import ConfigError, TrainConfig
from mvideo_core.training.trainer import MVideoTrainer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="accelerate launch -m mvideo_core.train", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--config", required=True, help="training config, YAML or JSON (see configs/train_example.yaml)"
    )
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config values")
    args = parser.parse_args(argv)
    try:
        config = TrainConfig.from_file(args.config, args.set)
    except ConfigError as err:
        parser.error(str(err))
    try:
        result = MVideoTrainer(config).train()
    except ConfigError as err:  # a bad launch, cache or checkpoint: one line, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    if result.weights_path is not None:
        print(f"MVideo weights: {result.weights_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
