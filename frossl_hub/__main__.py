"""Entry point of `python -m frossl_hub` (and `torchrun -m frossl_hub embed ...`)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
