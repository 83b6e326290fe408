"""Old module paths that moved (see the README's "Contributing" section): importing one warns and gives the module
at its new path, so code written for the old layout keeps working."""

import importlib
import sys
import warnings


def moved(old: str, new: str) -> None:
    """Make module ``old`` (being imported) the module ``new``, with a DeprecationWarning."""
    warnings.warn(f"{old} moved to {new}; import it from there", DeprecationWarning, stacklevel=3)
    sys.modules[old] = importlib.import_module(new)
