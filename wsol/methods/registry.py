"""The method registry: each training-time method registers itself where it is defined (``@register_method``)."""

from __future__ import annotations

from wsol.registry import Registry

METHODS: Registry = Registry("method", modules=("wsol.methods.cam", "wsol.methods.has", "wsol.methods.cutmix",
                                                "wsol.methods.adl", "wsol.methods.acol", "wsol.methods.spg"))
register_method = METHODS.register
