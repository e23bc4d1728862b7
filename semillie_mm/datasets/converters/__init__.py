# Copyright (c) semillie-mm contributors. All rights reserved.
"""Dataset converters (the logic behind ``tools/dataset_converters/``).

- :mod:`.visdrone_lowlight`: the VisDrone low-light set of the paper
  (day/night split, synthesised low-light partners, a manifest to rebuild it);
- :mod:`.visdrone2coco`: VisDrone-DET annotations to COCO JSON with a seeded,
  recorded split.

Not imported by ``semillie_mm.datasets``: importing them registers nothing.
"""
