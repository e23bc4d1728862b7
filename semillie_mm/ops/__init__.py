# Copyright (c) semillie-mm contributors. All rights reserved.
"""Custom operators."""
from .selective_scan import available_backends, selective_scan

__all__ = ['selective_scan', 'available_backends']
