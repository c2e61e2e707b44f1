"""`python -m train.transfer`: a classifier from any hub model on your labelled images.

``--mode linear`` (default) fits a linear head on the frozen backbone's features, extracted
once through the ``embed`` path (ONNX Runtime on the CPU) and cached; ``--mode finetune``
trains the whole backbone (timm's optimizer and scheduler factories, a lower learning rate
for the backbone than for the head, warm-up + cosine, augmentation; checkpointed and
resumable). ``--shots`` gives a few-shot table; OUT is a published, servable folder.
"""
from .data import TransferError
from .run import MODES, TransferOptions, run_transfer

__all__ = ["MODES", "TransferError", "TransferOptions", "run_transfer"]
