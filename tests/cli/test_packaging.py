"""``pip install .`` (a wheel, not editable) works from any folder: the configs travel inside the package.

A fresh virtual environment (with this interpreter's site-packages, so that torch and the other dependencies are
not downloaded again) gets the project installed non-editable; then, from a folder outside the checkout, the
quickstart trains for two steps and ``bottomup.infer`` runs on a synthetic image with the checkpoint it wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import venv
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_install_trains_and_infers_outside_the_checkout(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-q", str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]

    work = tmp_path / "elsewhere"  # not the checkout: only the installed package can be found
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HYDRA_FULL_ERROR"] = "1"

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(python), *args], cwd=work, env=env, capture_output=True, text=True, timeout=900)

    where = run("-c", "import bottomup, bottomup.build as b; print(bottomup.__file__); print(b.CONF_DIR)")
    assert where.returncode == 0, where.stderr[-3000:]
    module_file, conf_dir = where.stdout.split()
    assert Path(module_file).is_relative_to(env_dir), module_file  # the installed copy, not the checkout
    assert Path(conf_dir).is_relative_to(env_dir) and (Path(conf_dir) / "experiment" / "quickstart.yaml").is_file()

    trained = run(
        "-m", "bottomup.train", "experiment=quickstart", "trainer.epochs=1", "trainer.steps_per_epoch=2",
        "trainer.eval_every=0", "trainer.progress=false", "data.batch_size=2", "data.num_workers=0",
        "hydra.run.dir=run",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    checkpoint = work / "run" / "last.pt"
    assert checkpoint.is_file()

    saved = OmegaConf.create(torch.load(checkpoint, weights_only=True)["config"])  # data.root: the synthetic set
    image = sorted(Path(saved.data.val_images).glob("*.jpg"))[0]
    inferred = run(
        "-m", "bottomup.infer", str(image), "--checkpoint", str(checkpoint), "--output-dir", "out", "--no-progress"
    )
    assert inferred.returncode == 0, inferred.stdout[-3000:] + inferred.stderr[-3000:]
    results = json.loads((work / "out" / "results.json").read_text())
    assert isinstance(results, list)
    assert (work / "out" / f"{image.stem}.png").is_file()
