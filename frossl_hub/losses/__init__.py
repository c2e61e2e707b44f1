"""The self-supervised objectives, one module per objective (as lightly's ``loss`` package).

FroSSL (``frossl``) and its baselines SimCLR (``simclr``), Barlow Twins (``barlow_twins``) and
VICReg (``vicreg``): each module has the loss as an ``nn.Module`` class and as a function over
a list of V >= 2 views, re-exported here. Module names never equal a function's name, so
``from frossl_hub.losses import frossl_loss`` is always the function, never a module.
"""
from __future__ import annotations

from .barlow_twins import BarlowTwinsLoss, barlow_twins_loss, barlow_twins_multiview_loss
from .frossl import FroSSLLoss, frossl_loss
from .simclr import SimCLRLoss, simclr_loss
from .vicreg import VICRegLoss, vicreg_loss, vicreg_multiview_loss

__all__ = [
    "BarlowTwinsLoss",
    "FroSSLLoss",
    "SimCLRLoss",
    "VICRegLoss",
    "barlow_twins_loss",
    "barlow_twins_multiview_loss",
    "frossl_loss",
    "simclr_loss",
    "vicreg_loss",
    "vicreg_multiview_loss",
]
