"""The demo model's laboratory: scene generators, the training script and the localization study.

Not part of the installed package (``pip install`` ships ``gradcam_cli`` only). Run from the
repository root: ``python -m lab.train --out DIR``, ``python -m lab.heldout4 sheet.png``.
"""
