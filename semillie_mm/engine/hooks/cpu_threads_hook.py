"""CPUThreadsHook: training and testing on CPU share the cores with other jobs."""
from typing import Optional

from semillie_mm.utils.cpu_threads import CPUThreadGovernor

from mmagic.registry import HOOKS
from mmengine.hooks import Hook


def model_on_cpu(model) -> bool:
    """Whether a (possibly wrapped) model's parameters are on the CPU.

    Args:
        model (nn.Module): The runner's model.

    Returns:
        bool: True also for a model without parameters.
    """
    param = next(model.parameters(), None)
    return param is None or param.device.type == 'cpu'


@HOOKS.register_module()
class CPUThreadsHook(Hook):
    """Keep torch's thread count within the cores other jobs leave free.

    Before every train / val / test iteration it calls a
    :class:`~semillie_mm.utils.cpu_threads.CPUThreadGovernor` (which samples
    at most once per ``interval`` seconds), so that two trainings on the
    same cores do not busy-wait against each other; after the run the
    thread count found at its start is put back. It does nothing when the
    model is not on the CPU or ``SEMILLIE_ADAPTIVE_THREADS=0``.

    Args:
        interval (float): Seconds between two samples of the CPU load.
            Defaults to 1.0.
        margin (float): Cores other jobs may use without costing a thread.
            Defaults to 0.25.
    """

    priority = 'VERY_HIGH'

    def __init__(self, interval: float = 1.0, margin: float = 0.25):
        self.interval = interval
        self.margin = margin
        self.governor: Optional[CPUThreadGovernor] = None

    def before_run(self, runner) -> None:
        """Start a governor when the model runs on the CPU."""
        if model_on_cpu(runner.model):
            self.governor = CPUThreadGovernor(
                interval=self.interval, margin=self.margin)
            if not self.governor.enabled:
                self.governor = None

    def _update(self):
        if self.governor is not None:
            self.governor.update()

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        """Adjust the thread count before a training iteration."""
        self._update()

    def before_val_iter(self, runner, batch_idx, data_batch=None) -> None:
        """Adjust the thread count before a validation iteration."""
        self._update()

    def before_test_iter(self, runner, batch_idx, data_batch=None) -> None:
        """Adjust the thread count before a test iteration."""
        self._update()

    def after_run(self, runner) -> None:
        """Put back the thread count of the start."""
        if self.governor is not None:
            self.governor.restore()
            self.governor = None
