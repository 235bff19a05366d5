"""Training entry point: ``python -m bottomup.train experiment=higherhrnet_w32 data.root=/data/coco``.

Hydra composes ``conf/train.yaml`` with the experiment and the overrides; :func:`bottomup.api.train` does the
work (one CPU, one GPU, or many with ``torchrun``). Checkpoints: ``<run dir>/last.pt`` every epoch (atomic),
``best.pt`` by COCO AP when evaluation is on; ``resume=<run dir>/last.pt`` continues a run.

Published models (``python -m bottomup.zoo``): ``checkpoint=NAME`` fine-tunes one (without ``experiment=`` its own
experiment is added to the command line), ``model.pretrained=NAME`` starts from an ImageNet backbone of the zoo
(``hrnet_w32_imagenet``); their files are downloaded once into the cache and verified.

Exit status: 0 done; 2 a config, data or checkpoint error, or a published model's file that cannot be had (one
line naming the key or file and the fix; with ``HYDRA_FULL_ERROR=1`` the traceback); 3 the loss or the weights
became NaN / inf (nothing non-finite is saved; the message says which checkpoint to resume from); 1 another process
of a ``torchrun`` run stopped answering for ``trainer.dist_timeout`` seconds (one line, what is on disk), or a key
that is not in the config (Hydra's error).
"""

from __future__ import annotations

import logging
import os
import sys

import hydra
from omegaconf import DictConfig

from bottomup.api import train
from bottomup.build import CONF_DIR
from bottomup.core.download import DownloadError
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
    except (ValueError, FileNotFoundError, CheckpointError, ImageReadError, DownloadError) as e:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        log.error("%s", e)
        sys.exit(2)
    except RuntimeError as e:  # gloo / NCCL give up on a peer after trainer.dist_timeout
        text = str(e).lower()
        if os.environ.get("HYDRA_FULL_ERROR") == "1" or "timeout" not in text and "timed out" not in text:
            raise
        from pathlib import Path

        from bottomup.engine.trainer import on_disk

        run_dir = Path(str(cfg.resume)).resolve().parent if cfg.get("resume") else Path(str(cfg.output_dir))
        log.error(
            "another process of this run did not answer for trainer.dist_timeout=%g s (hung, stopped or killed; "
            "torch: %s). %s",
            float(cfg.trainer.dist_timeout), str(e).strip().splitlines()[0], on_disk(run_dir),
        )  # fmt: skip
        sys.exit(1)


def _with_zoo_overrides(argv: list[str]) -> list[str]:
    """``checkpoint=NAME`` of a published model without ``experiment=``: the model's experiment added to the
    command line (``bottomup.build.zoo_command_overrides``), so that the network fits its weights."""
    from bottomup.build import zoo_command_overrides

    extra = zoo_command_overrides(argv, "checkpoint")
    if extra:  # before Hydra sets up logging: said on stderr
        print(f"pretrained model: {' '.join(extra)} added to the command line", file=sys.stderr)
    return argv + extra


if __name__ == "__main__":
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    sys.argv[1:] = _with_zoo_overrides(sys.argv[1:])
    main()
