"""SemiLLIE: the mean-teacher model of Semi-LLIE (paper Sec. III-B, III-F, eq. 10)."""
import math
from typing import Dict, Optional

import torch
import torch.nn as nn
from mmengine.logging import MessageHub
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapperDict

from mmagic.models.base_models import BaseEditModel
from mmagic.models.utils import set_requires_grad
from mmagic.registry import MODELS
from mmagic.structures import DataSample


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
        self._train_steps = 0

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

    def enhancer(self) -> nn.Module:
        """The network used for validation, testing and inference."""
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
        if self._train_steps > 0 and int(self.teacher.steps) == 0:
            raise RuntimeError(
                'the teacher was never updated: add '
                "dict(type='MeanTeacherHook') to custom_hooks")
        self._train_steps += 1
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
        g_optim.update_params(loss_g)
        log_vars['lambda_unsup'] = torch.tensor(lam)

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
            d_optim.update_params(loss_d)
            log_vars.update(log_d)
        return log_vars

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
