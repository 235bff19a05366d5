"""``pip install .`` (a wheel, not editable) works from any folder: the configs travel inside the package.

The running interpreter builds the wheel (``pip wheel --no-build-isolation``: hatchling comes with the dev extra, so
nothing is downloaded) and a fresh virtual environment installs it with ``--no-deps``. That environment sees the
running one's packages (torch and the other dependencies) through a ``.pth`` file naming its site-packages, whatever
the running environment is: the global interpreter, a venv or a conda env (``system_site_packages`` would name the
*base* interpreter's, which lacks them in a venv). Then, from a folder outside the checkout, the quickstart trains for
two steps and ``bottomup.infer`` runs on a synthetic image with the checkpoint it wrote.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[2]


def running_site_dirs() -> list[str]:
    """The running environment's site-packages folders (a venv with system site-packages: its own, then the base's),
    and the user's site-packages where this interpreter reads it."""
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE and os.path.isdir(site.getusersitepackages()):
        dirs.append(site.getusersitepackages())
    return dirs


def pip_output(proc: subprocess.CompletedProcess) -> str:
    return f"{proc.args}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"


@pytest.mark.slow
def test_wheel_install_trains_and_infers_outside_the_checkout(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(dist), str(REPO)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert built.returncode == 0, pip_output(built)
    (wheel,) = dist.glob("bottomup-*.whl")

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)  # its own site-packages only, for now
    python = env_dir / "bin" / "python"
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert installed.returncode == 0, pip_output(installed)
    # Then the running environment's packages (torch, hydra, ...), after the venv's own: its bottomup comes first.
    # Plain folder lines, so the .pth files in those folders (such as an editable install's) are not read.
    purelib = [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]
    env_site = Path(subprocess.run(purelib, capture_output=True, text=True, check=True, timeout=120).stdout.strip())
    assert env_site.is_dir() and env_site.is_relative_to(env_dir), env_site
    (env_site / "_running_env.pth").write_text("".join(f"{d}\n" for d in running_site_dirs()))

    work = tmp_path / "elsewhere"  # not the checkout: only the installed package can be found
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HYDRA_FULL_ERROR"] = "1"

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(python), *args], cwd=work, env=env, capture_output=True, text=True, timeout=900)

    where = run(
        "-c", "import bottomup, bottomup.build as b, torch; print(bottomup.__file__, b.CONF_DIR, torch.__file__)"
    )
    assert where.returncode == 0, where.stderr[-3000:]
    module_file, conf_dir, torch_file = where.stdout.split()
    assert Path(module_file).is_relative_to(env_dir), module_file  # the installed copy, not the checkout
    assert Path(conf_dir).is_relative_to(env_dir) and (Path(conf_dir) / "experiment" / "quickstart.yaml").is_file()
    assert Path(torch_file).resolve() == Path(torch.__file__).resolve()  # the dependencies: the running environment's

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
