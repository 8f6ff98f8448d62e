"""The training engine: :func:`rwenas.fit.loop.fit` trains any ``nn.Module`` on a
:class:`rwenas.fit.loop.TrainData` with a recipe. It sits below the estimators (the
short-training estimator trains networks) and serves ``rwenas train`` and the bench.

Modules: :mod:`~rwenas.fit.recipes` (CifarRecipe, ImageNetRecipe), :mod:`~rwenas.fit.schedules`
(learning-rate and drop-path schedules), :mod:`~rwenas.fit.augment` (batched tensor
augmentation), :mod:`~rwenas.fit.precision` (bfloat16 autocast, channels-last),
:mod:`~rwenas.fit.metrics` (loss, top-k, evaluation), :mod:`~rwenas.fit.checkpoint` (atomic,
safely loaded checkpoints), :mod:`~rwenas.fit.outputs` (metrics CSV, curve plot, result) and
:mod:`~rwenas.fit.loop` (the epoch loop, resumable bit for bit).
"""
