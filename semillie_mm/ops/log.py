# Copyright (c) semillie-mm contributors. All rights reserved.
"""One-line notices of the ops (which scan backend, which conv weight
gradient) into MMEngine's current logger, so that they land in a training's
log."""
import logging


def log_current(msg: str, level: int = logging.INFO) -> None:
    """Log ``msg`` to MMEngine's current logger, or to this package's
    logger where MMEngine cannot be imported.

    Args:
        msg (str): the message.
        level (int): a ``logging`` level.
    """
    try:
        from mmengine.logging import print_log
    except Exception:
        logging.getLogger('semillie_mm.ops').log(level, msg)
    else:
        print_log(msg, logger='current', level=level)
