# Semi-LLIE as in the paper (Sec. III, eq. 10); SPEC.md lists the choices.
model = dict(
    type='SemiLLIE',
    generator=dict(
        type='SemiLLIENet',
        embed_dim=64,
        num_groups=2,
        blocks_per_group=2,
        d_state=16,
        expand=2,
        multiscale='parallel',  # paper eq. 3; 'serial' = authors' code
        drop_path=0.1),
    # teacher = EMA of the student: momentum max(0.004, 1 / (1 + step))
    teacher=dict(type='MomentumAnnealingEMA', momentum=0.004, gamma=1),
    pixel_loss=dict(type='L1Loss', loss_weight=1.0, reduction='mean'),
    # one frozen RAM Swin-L/384 encoder shared by the two RAM losses;
    # the weights file is RAM's ram_swin_large_14m.pth (see README, "Weights")
    ram_encoder=dict(
        type='RAMImageEncoder',
        pretrained='checkpoints/ram_swin_large_14m.pth'),
    # gamma1 = 0.1; stages: last block of Swin stages 2, 3, 4 (SPEC 2)
    perceptual_loss=dict(type='RAMPerceptualLoss', loss_weight=0.1),
    gradient_loss=dict(type='GradientMagnitudeLoss', loss_weight=0.1),
    consistency_loss=dict(type='L1Loss', loss_weight=1.0),
    contrastive_loss=dict(type='SemanticContrastiveLoss', loss_weight=1.0),
    # pix2pix 70x70 PatchGAN, vanilla GAN log loss, lambda2 = 0.1
    discriminator=dict(
        type='PatchDiscriminator',
        in_channels=3,
        base_channels=64,
        num_conv=3,
        norm_cfg=dict(type='BN'),
        init_cfg=dict(type='normal', gain=0.02)),
    gan_loss=dict(
        type='GANLoss',
        gan_type='vanilla',
        real_label_val=1.0,
        fake_label_val=0.0,
        loss_weight=0.1),
    # lambda1(t) = 0.2 exp(-5 (1 - t / T)^2), T in epochs (paper: T = 200)
    unsup_weight=0.2,
    unsup_ramp=dict(length=200, by='epoch'),
    test_cfg=dict(use_teacher=True),
    data_preprocessor=dict(
        type='DataPreprocessor', mean=[0., 0., 0.], std=[255., 255., 255.]),
)
