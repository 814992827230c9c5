"""wsol: a weakly supervised object localization benchmark suite (CAM, Zhou et al. CVPR 2016)."""

from pathlib import Path

__version__ = "0.1.0"

#: The Hydra configs live at the repository's top level (``configs/``); the package is installed
#: in editable mode (see README), so the console scripts find them next to the package.
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")
