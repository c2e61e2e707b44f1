"""Training code: on-device augmentations, recipes and the FroSSL trainer."""
