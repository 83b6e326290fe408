"""Deprecated: moved to `modeling_sprm.apps.conversion`."""

from ._deprecated import moved

moved(__name__, "modeling_sprm.apps.conversion")
