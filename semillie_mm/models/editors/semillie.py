"""SemiLLIE: the mean-teacher model of Semi-LLIE (paper Sec. III-B, III-F, eq. 10)."""
import logging
import math
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from mmagic.models.base_models import BaseEditModel
from mmagic.models.utils import set_requires_grad
from mmagic.registry import MODELS
from mmengine.dist import all_reduce, is_distributed
from mmengine.logging import MessageHub, print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapperDict


def unsupervised_weight(t: float, max_weight: float, ramp_length: float) -> float:
    """The paper's warm-up ``lambda1(t) = w * exp(-5 (1 - t / T)^2)`` for t < T.

    Args:
        t (float): current epoch or iteration (0-based).
        max_weight (float): w (0.2 in the paper).
        ramp_length (float): T; ``<= 0`` disables the ramp.

    Returns:
        float: the weight of the unsupervised terms at ``t``.
    """
    if ramp_length <= 0 or t >= ramp_length:
        return float(max_weight)
    phase = 1.0 - max(t, 0.0) / ramp_length
    return float(max_weight * math.exp(-5.0 * phase * phase))


@MODELS.register_module()
class SemiLLIE(BaseEditModel):
    """Semi-supervised low-light enhancement with a mean teacher.

    The student (``generator``) is trained by gradient descent; the teacher is an
    exponential moving average of the student (:class:`MomentumAnnealingEMA`, in
    eval mode, no gradient), updated after every generator step by
    :class:`MeanTeacherHook`. One training iteration (eq. 10)::

        paired:    L_sup + g1 L_ramper + g2 L_grad + lambda2 L_adv
        unpaired:  lambda1(t) * (L1(student(strong), teacher(weak))
                                 + L_scr(student(strong), teacher(weak), weak))
        then the discriminator step on detached student outputs.

    Non-finite losses: when a generator loss term is NaN or infinite (on any
    rank: a flag is all-reduced, so every DDP process skips together), the
    iteration's generator and discriminator steps are skipped, the
    BatchNorm running statistics it touched are restored and
    :class:`MeanTeacherHook` leaves the teacher alone
    (``skipped_generator_step``); a non-finite discriminator loss skips the
    discriminator step only. Each skip logs a warning naming the iteration
    and the loss terms. ``max_nonfinite_skips`` skipped iterations in a row
    stop the run with a ``FloatingPointError``.

    ``loss_weight`` of each loss config carries g1, g2, lambda2 and the relative
    weights of the unsupervised terms; ``unsup_weight`` and ``unsup_ramp`` give
    lambda1(t). The negative of the contrastive loss is the low-light input (its
    weak view: the un-augmented image).

    The RAM image encoder (``ram_encoder``) is built once and shared by the two RAM
    losses. It is frozen and leaves its weights out of checkpoints (they come from
    its own weights file; see :class:`RAMImageEncoder`). Where RAM's weights
    are not available, :class:`ImageNetEncoder` (an ImageNet EfficientNet-Lite0
    with the same interface) takes its place; the encoder logs which it is.

    Args:
        generator (dict): student network config (e.g. ``SemiLLIENet``).
        pixel_loss (dict): supervised fidelity loss config (L1 in the paper).
        teacher (dict): EMA config. Default: ``MomentumAnnealingEMA`` with
            momentum 0.004 and gamma 1, i.e. momentum ``max(0.004, 1/(1+step))``.
        ram_encoder (dict, optional): ``RAMImageEncoder`` (or
            ``ImageNetEncoder``) config, shared by the RAM losses.
        perceptual_loss (dict, optional): ``RAMPerceptualLoss`` config.
        gradient_loss (dict, optional): ``GradientMagnitudeLoss`` config.
        consistency_loss (dict, optional): teacher-student loss on unpaired data.
            Default: L1.
        contrastive_loss (dict, optional): ``SemanticContrastiveLoss`` config.
        discriminator (dict, optional): discriminator config (PatchGAN).
        gan_loss (dict, optional): ``GANLoss`` config (vanilla, weight 0.1).
        unsup_weight (float): lambda1's maximum (0.2). 0 trains supervised
            only: the unpaired forward passes are skipped.
        unsup_ramp (dict): ``length`` (T) and ``by`` ('epoch' or 'iter').
        max_nonfinite_skips (int, optional): stop after this many iterations
            in a row were skipped for a non-finite loss. None never stops.
            Default: 10.
        train_cfg (dict, optional): unused keys are kept for compatibility.
        test_cfg (dict, optional): ``use_teacher`` (default True) selects the
            network used for validation, testing and inference.
        init_cfg (dict, optional): initialisation config.
        data_preprocessor (dict, optional): data pre-processor config.
    """

    def __init__(self,
                 generator: dict,
                 pixel_loss: dict,
                 teacher: Optional[dict] = None,
                 ram_encoder: Optional[dict] = None,
                 perceptual_loss: Optional[dict] = None,
                 gradient_loss: Optional[dict] = None,
                 consistency_loss: Optional[dict] = None,
                 contrastive_loss: Optional[dict] = None,
                 discriminator: Optional[dict] = None,
                 gan_loss: Optional[dict] = None,
                 unsup_weight: float = 0.2,
                 unsup_ramp: Optional[dict] = None,
                 max_nonfinite_skips: Optional[int] = 10,
                 train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None,
                 init_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None):
        super().__init__(
            generator=generator,
            pixel_loss=pixel_loss,
            train_cfg=train_cfg,
            test_cfg=test_cfg,
            init_cfg=init_cfg,
            data_preprocessor=data_preprocessor)
        teacher = dict(teacher or
                       dict(type='MomentumAnnealingEMA', momentum=0.004,
                            gamma=1))
        self.teacher = MODELS.build(
            teacher, default_args=dict(model=self.generator))
        self.teacher.requires_grad_(False).eval()

        self.ram_encoder = MODELS.build(ram_encoder) if ram_encoder else None
        if (perceptual_loss or contrastive_loss) and self.ram_encoder is None:
            raise ValueError('the RAM losses need `ram_encoder` in the model '
                             'config (a RAMImageEncoder or ImageNetEncoder)')
        shared = dict(encoder=self.ram_encoder)
        self.perceptual_loss = MODELS.build(
            perceptual_loss, default_args=shared) if perceptual_loss else None
        self.contrastive_loss = MODELS.build(
            contrastive_loss, default_args=shared) if contrastive_loss else None
        self.gradient_loss = MODELS.build(
            gradient_loss) if gradient_loss else None
        self.consistency_loss = MODELS.build(
            consistency_loss or dict(type='L1Loss', loss_weight=1.0))
        self.discriminator = MODELS.build(
            discriminator) if discriminator else None
        if (self.discriminator is None) != (gan_loss is None):
            raise ValueError('`discriminator` and `gan_loss` go together')
        self.gan_loss = MODELS.build(gan_loss) if gan_loss else None

        self.unsup_weight = unsup_weight
        self.unsup_ramp = dict(dict(length=0, by='epoch'), **(unsup_ramp or {}))
        if self.unsup_ramp['by'] not in ('epoch', 'iter'):
            raise ValueError("unsup_ramp.by must be 'epoch' or 'iter'")
        if max_nonfinite_skips is not None and max_nonfinite_skips < 1:
            raise ValueError('max_nonfinite_skips must be >= 1 or None, got '
                             f'{max_nonfinite_skips}')
        self.max_nonfinite_skips = max_nonfinite_skips
        #: True when the last train_step skipped the generator step (read by
        #: MeanTeacherHook: the teacher is not updated then).
        self.skipped_generator_step = False
        #: Set by MeanTeacherHook when it runs (see the check in train_step).
        self.mean_teacher_hook_ran = False
        self._consecutive_skips = 0
        self._train_steps = 0
        self._norm_modules: Optional[List[nn.Module]] = None

    def init_weights(self):
        """Initialise the parts, then start the teacher as a copy of the
        student."""
        # mmagic 1.2.0's generation_init_weights (PatchDiscriminator) fails
        # when a parent's init_weights runs it (its init_info is unbound for
        # container modules). Initialised on its own first, it reports
        # is_init and the parent's pass skips it.
        disc = self.discriminator
        if is_model_wrapper(disc):
            disc = disc.module
        if disc is not None and not getattr(disc, 'is_init', False) and \
                not hasattr(disc, '_params_init_info'):
            disc.init_weights()
        super().init_weights()
        self.teacher.module.load_state_dict(self.student.state_dict())

    # ------------------------------------------------------------ modes
    def train(self, mode: bool = True):
        """Switch the student and discriminator; the teacher and the RAM encoder
        always stay in eval mode."""
        super().train(mode)
        self.teacher.eval()
        if self.ram_encoder is not None:
            self.ram_encoder.eval()
        return self

    @property
    def student(self) -> nn.Module:
        """The student network, unwrapped from DDP if needed."""
        g = self.generator
        return g.module if is_model_wrapper(g) else g

    def enhancer(self, use_teacher: Optional[bool] = None) -> nn.Module:
        """The network used for validation, testing and inference.

        Args:
            use_teacher (bool, optional): The teacher (True) or the student
                (False). Default: ``test_cfg['use_teacher']`` (True when
                unset), the one switch that validation, testing and
                :class:`~semillie_mm.apis.SemiLLIEInferencer` follow.

        Returns:
            nn.Module: The teacher's network or the student.
        """
        if use_teacher is None:
            use_teacher = (self.test_cfg or {}).get('use_teacher', True)
        return self.teacher.module if use_teacher else self.student

    def forward_tensor(self, inputs, data_samples=None, **kwargs):
        """Enhance ``inputs`` with the teacher (default) or the student.

        Args:
            inputs (Tensor): (B, 3, H, W) images in [0, 1].
            data_samples: unused.

        Returns:
            Tensor: enhanced images.
        """
        return self.enhancer()(inputs, **kwargs)

    # ------------------------------------------------------------ training
    def current_unsup_weight(self) -> float:
        """lambda1(t), t taken from the runner's message hub."""
        hub = MessageHub.get_current_instance()
        t = hub.get_info(self.unsup_ramp['by'], 0) or 0
        return unsupervised_weight(t, self.unsup_weight,
                                   self.unsup_ramp['length'])

    def train_step(self, data: dict,
                   optim_wrapper: OptimWrapperDict) -> Dict[str, torch.Tensor]:
        """One iteration of eq. 10: generator step, then discriminator step.

        Args:
            data (dict): a batch from ``SemiSupervisedDataset`` (inputs with
                'paired', 'unpaired_weak', 'unpaired_strong'; data samples with
                ``gt_img``).
            optim_wrapper (OptimWrapperDict): 'generator' and, with a
                discriminator, 'discriminator'.

        Returns:
            dict: every loss term and lambda1, for logging.
        """
        if self._train_steps > 0 and int(self.teacher.steps) == 0 and \
                not self.mean_teacher_hook_ran:
            raise RuntimeError(
                'the teacher was never updated: add '
                "dict(type='MeanTeacherHook') to custom_hooks")
        self.skipped_generator_step = False
        norm_state = self._save_norm_stats()
        data = self.data_preprocessor(data, True)
        inputs, data_samples = data['inputs'], data['data_samples']
        lq, weak = inputs['paired'], inputs['unpaired_weak']
        strong = inputs['unpaired_strong']
        gt = data_samples.gt_img

        g_optim = optim_wrapper['generator']
        losses = {}
        if self.discriminator is not None:
            set_requires_grad(self.discriminator, False)
        use_unpaired = self.unsup_weight != 0
        with g_optim.optim_context(self.generator):
            if use_unpaired:
                pred, pred_strong = self._student_forward(lq, strong)
            else:  # supervised only: the unpaired branch would weigh 0
                pred = self.generator(lq)
            losses['loss_sup'] = self.pixel_loss(pred, gt)
            if self.perceptual_loss is not None:
                losses['loss_ramper'] = self.perceptual_loss(pred, gt)
            if self.gradient_loss is not None:
                losses['loss_grad'] = self.gradient_loss(pred, gt)

            lam = self.current_unsup_weight()
            if use_unpaired:
                with torch.no_grad():
                    pseudo = self.teacher(weak)
                losses['loss_un'] = lam * self.consistency_loss(
                    pred_strong, pseudo)
                if self.contrastive_loss is not None:
                    losses['loss_scr'] = lam * self.contrastive_loss(
                        pred_strong, pseudo, weak)
            if self.discriminator is not None:
                losses['loss_adv'] = self.gan_loss(
                    self.discriminator(pred), True, is_disc=False)
            loss_g, log_vars = self.parse_losses(losses)
        bad = self._nonfinite_terms(log_vars)
        log_vars['lambda_unsup'] = torch.tensor(lam)
        if bad is not None:
            self.skipped_generator_step = True
            self._restore_norm_stats(norm_state)
            self._skip('generator and discriminator steps are', bad)
            return log_vars
        g_optim.update_params(loss_g)
        self._train_steps += 1

        d_skipped = False
        if self.discriminator is not None:
            set_requires_grad(self.discriminator, True)
            d_optim = optim_wrapper['discriminator']
            with d_optim.optim_context(self.discriminator):
                d_losses = dict(
                    loss_d_fake=0.5 * self.gan_loss(
                        self.discriminator(pred.detach()), False,
                        is_disc=True),
                    loss_d_real=0.5 * self.gan_loss(
                        self.discriminator(gt), True, is_disc=True))
                loss_d, log_d = self.parse_losses(d_losses)
            bad = self._nonfinite_terms(log_d)
            if bad is None:
                d_optim.update_params(loss_d)
            else:
                d_skipped = True
                self._restore_norm_stats(norm_state, only=self.discriminator)
                self._skip('discriminator step is', bad)
            log_vars.update(log_d)
        if not d_skipped:
            self._consecutive_skips = 0
        return log_vars

    # ------------------------------------------------------------ faults
    @staticmethod
    def _nonfinite_terms(log_vars: Dict[str, torch.Tensor]
                         ) -> Optional[List[str]]:
        """The non-finite loss terms, or None if every rank's are finite.

        One flag per rank is all-reduced (max) when distributed, so all
        ranks skip the same steps and DDP's collectives stay matched.

        Args:
            log_vars (dict): ``parse_losses``'s log variables (``loss`` and
                the terms).

        Returns:
            list[str] | None: None when the losses of every rank are finite;
            otherwise the names of this rank's non-finite terms (empty when
            only another rank's were).
        """
        names = list(log_vars)
        local = torch.stack([
            ~torch.isfinite(v.detach()).all() for v in log_vars.values()
        ]).float()
        flag = local.max().reshape(1)
        if is_distributed():
            all_reduce(flag, op='max')
        values = torch.cat([local, flag]).tolist()
        if values[-1] == 0:
            return None
        bad = [n for n, v in zip(names, values) if v]
        return [n for n in bad if n != 'loss'] or bad

    def _skip(self, what: str, bad: List[str]) -> None:
        """Count a skipped iteration, warn, and stop after too many."""
        self._consecutive_skips += 1
        it = int(MessageHub.get_current_instance().get_info('iter', 0)
                 or 0) + 1
        terms = (f"non-finite {', '.join(bad)}" if bad else
                 'a non-finite loss on another rank')
        limit = self.max_nonfinite_skips
        if limit is not None and self._consecutive_skips >= limit:
            raise FloatingPointError(
                f'{self._consecutive_skips} training iterations in a row had '
                f'a non-finite loss (the last: iteration {it}, {terms}); '
                'stopping. Lower the learning rate, check the data, or '
                'resume from an earlier checkpoint (model.max_nonfinite_skips'
                ' sets this limit).')
        print_log(
            f'iteration {it}: {terms}; the {what} skipped '
            f'({self._consecutive_skips} in a row'
            + (f', the run stops at {limit})' if limit else ')'),
            logger='current', level=logging.WARNING)

    def _norm_stat_modules(self) -> List[nn.Module]:
        """The normalisation layers whose running statistics the forward
        passes of a training step update (student and discriminator)."""
        if self._norm_modules is None:
            parts = [m for m in (self.generator, self.discriminator)
                     if m is not None]
            self._norm_modules = [
                m for part in parts for m in part.modules()
                if isinstance(m, nn.modules.batchnorm._NormBase)
                and m.track_running_stats
            ]
        return self._norm_modules

    def _save_norm_stats(self) -> List[Tuple[nn.Module, dict]]:
        """Copies of the running statistics, to undo a skipped step."""
        return [(m, {k: getattr(m, k).clone()
                     for k in ('running_mean', 'running_var',
                               'num_batches_tracked')
                     if getattr(m, k, None) is not None})
                for m in self._norm_stat_modules()]

    @staticmethod
    def _restore_norm_stats(state: List[Tuple[nn.Module, dict]],
                            only: Optional[nn.Module] = None) -> None:
        """Put back the running statistics saved by
        :meth:`_save_norm_stats` (of the modules under ``only``, if given)."""
        keep = None if only is None else {id(m) for m in only.modules()}
        with torch.no_grad():
            for module, buffers in state:
                if keep is not None and id(module) not in keep:
                    continue
                for name, value in buffers.items():
                    getattr(module, name).copy_(value)

    def _student_forward(self, lq: torch.Tensor, strong: torch.Tensor):
        """Run the student on the paired input and the strong view (one batch
        when their sizes match)."""
        if lq.shape[1:] == strong.shape[1:]:
            out = self.generator(torch.cat([lq, strong], dim=0))
            return out[:lq.shape[0]], out[lq.shape[0]:]
        return self.generator(lq), self.generator(strong)

    def forward_train(self, inputs, data_samples=None, **kwargs):
        """Not used: training goes through :meth:`train_step`."""
        raise NotImplementedError(
            'SemiLLIE trains through train_step (mean teacher + GAN)')
