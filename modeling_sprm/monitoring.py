"""Deprecated: moved to `modeling_sprm.training.monitoring`."""

from ._deprecated import moved

moved(__name__, "modeling_sprm.training.monitoring")
