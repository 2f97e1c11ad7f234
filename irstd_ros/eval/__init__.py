"""Evaluation: the datasets and their splits and protocols, the IRSTD metrics (IoU, nIoU, Pd, Fa) with
bootstrap intervals, the loop that runs a detector over a split, and the plots."""
