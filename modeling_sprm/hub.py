"""Deprecated: moved to `modeling_sprm.apps.hub`."""

from ._deprecated import moved

moved(__name__, "modeling_sprm.apps.hub")
