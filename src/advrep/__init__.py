"""advrep: replicate classic adversarial-example results as one reproducible DVC pipeline.

Modules, one job each:
    data     fetch MNIST / CIFAR-10 as verified arrays; load them as tensors in [0, 1]
    models   activation factory, architectures (normalisation inside), save/load as state dict + JSON
    train    the training loop: seeded per epoch, resumable, pluggable objective
    config   one strict schema per params.yaml section
    store    atomic writes, provenance, logging
    report   the markdown report and its figures
"""
__version__ = "0.1.0"
