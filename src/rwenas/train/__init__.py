"""Training chosen architectures from scratch: the validation stage, the ImageNet transfer, and
export. The epoch loop itself is :mod:`rwenas.fit`.

Modules: :mod:`~rwenas.train.run` (``train``: architecture + recipe + dataset → a resumable
run directory), :mod:`~rwenas.train.stream` (ImageFolder read from disk batch by batch),
:mod:`~rwenas.train.pick` (architectures from a search's front) and
:mod:`~rwenas.train.export` (TorchScript/ONNX).
"""
