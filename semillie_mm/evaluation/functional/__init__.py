"""Plain-array versions of the metrics (no registry, no data samples)."""
from .fid import (
                  InceptionFeatureExtractor,
                  extract_features,
                  feature_statistics,
                  fid_folders,
                  fid_from_features,
                  folder_statistics,
                  frechet_distance,
)
from .gt_mean import gray_mean, gt_mean_scale
from .imagenet_agreement import agreement_from_classes, imagenet_agreement, imagenet_topk
from .loe import loe, loe_from_lightness, loe_lightness_maps
from .temporal import temporal_change

__all__ = [
    'loe', 'loe_lightness_maps', 'loe_from_lightness',
    'InceptionFeatureExtractor', 'extract_features', 'feature_statistics',
    'folder_statistics', 'frechet_distance', 'fid_from_features',
    'fid_folders', 'gray_mean', 'gt_mean_scale', 'imagenet_agreement',
    'imagenet_topk', 'agreement_from_classes', 'temporal_change'
]
