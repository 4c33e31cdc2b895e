"""lakebert training: plain PyTorch, no Spark, so it runs under TorchDistributor, torchrun or alone.

    from training.data import TokenizedSplit, batches
"""
