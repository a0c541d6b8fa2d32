"""Blocks: typed configuration saved in Legato's store and loaded by name.

``from legato.blocks.core import Block``; system blocks in :mod:`legato.blocks.system`; file
systems in :mod:`legato.filesystems`; clouds in :mod:`legato.gcp` and :mod:`legato.aws`.
"""

from .core import Block
from .fields import SecretDict

__all__ = ["Block", "SecretDict"]
