"""Training from scratch: the validation stage, the ImageNet transfer, and export.

Modules: :mod:`~rwenas.train.recipes` (CifarRecipe, ImageNetRecipe), :mod:`~rwenas.train.
schedules` (learning-rate and drop-path schedules), :mod:`~rwenas.train.augment` (batched
tensor augmentation), :mod:`~rwenas.train.loop` (train, fit, evaluate), :mod:`~rwenas.train.
checkpoint` (atomic, safely loaded checkpoints), :mod:`~rwenas.train.pick` (architectures from a
search's front), :mod:`~rwenas.train.export` (TorchScript/ONNX) and
:mod:`~rwenas.train.commands` (``rwenas train`` / ``rwenas export``).
"""
