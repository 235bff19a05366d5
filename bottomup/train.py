"""Training entry point: ``python -m bottomup.train experiment=higherhrnet_w32 data.root=/data/coco``.

Hydra composes ``conf/train.yaml`` with the experiment and the overrides; :func:`bottomup.api.train` does the
work (one CPU, one GPU, or many with ``torchrun``). Checkpoints: ``<run dir>/last.pt`` every epoch (atomic),
``best.pt`` by COCO AP when evaluation is on; ``resume=<run dir>/last.pt`` continues a run.

Exit status: 0 done; 2 a config, data or checkpoint error (one line naming the key or file and the fix; with
``HYDRA_FULL_ERROR=1`` the traceback); 3 the loss or the weights became NaN / inf (nothing non-finite is saved; the
message says which checkpoint to resume from). A key that is not in the config is Hydra's error (status 1).
"""

from __future__ import annotations

import logging
import os
import sys

import hydra
from omegaconf import DictConfig

from bottomup.api import train
from bottomup.build import CONF_DIR
from bottomup.data.io import ImageReadError
from bottomup.engine.checkpoint import CheckpointError
from bottomup.engine.trainer import NonFiniteLossError

log = logging.getLogger("bottomup.train")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> None:
    """``python -m bottomup.train [experiment=NAME] [overrides]`` (see the module docstring)."""
    try:
        train(cfg)
    except NonFiniteLossError as e:
        log.error("%s", e)
        sys.exit(3)
    except (ValueError, FileNotFoundError, CheckpointError, ImageReadError) as e:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        log.error("%s", e)
        sys.exit(2)


if __name__ == "__main__":
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    main()
