"""Deprecated: moved to `modeling_sprm.training.features`."""

from ._deprecated import moved

moved(__name__, "modeling_sprm.training.features")
