"""Helpers for the downstream detection study (paper Sec. V); mmdet itself is not imported here."""
from .weight_init import LocalPretrainedInit, check_local_checkpoint

__all__ = ['LocalPretrainedInit', 'check_local_checkpoint']
