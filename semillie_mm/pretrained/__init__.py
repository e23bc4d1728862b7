"""The trained model shipped with semillie-mm (data, not code).

``semillie_target.py`` (a self-contained mmengine config),
``semillie_target_teacher.pth`` (the state dict of the mean teacher's
``SemiLLIENet``) and ``MODEL_CARD.md`` (what the model is). Find them with
:func:`semillie_mm.apis.shipped_model`; ``tools/enhance.py INPUT OUTPUT`` and
``tools/webui.py`` without a config use them. This file makes the folder a
package so that ``setup.py`` installs its files (``package_data``).
"""
