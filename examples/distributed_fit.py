"""
==========================================
Data-parallel training with torch.distributed
==========================================

Launch on one machine with two processes (CPU, gloo)::

    torchrun --nproc-per-node 2 examples/distributed_fit.py

or on GPUs (one process per GPU, NCCL) with ``--backend nccl``. Every process passes the same
data to ``fit``; inside an initialised process group ``DeepConvGMM`` starts every rank from
rank 0's initialisation and shuffling order, gives each rank its share of every minibatch and
sums gradients and losses over the ranks, so all ranks end with the same model as one
process on the whole batches (up to floating-point summation order).
"""

import argparse
import os

import numpy as np
import torch
import torch.distributed as dist
from sklearn.datasets import load_digits

from skdcgmm import DeepConvGMM

parser = argparse.ArgumentParser()
parser.add_argument("--backend", default="gloo", choices=["gloo", "nccl"])
args = parser.parse_args()

dist.init_process_group(args.backend)
rank = dist.get_rank()
device = "cpu"
if args.backend == "nccl":
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    torch.cuda.set_device(local_rank)
    device = f"cuda:{local_rank}"

X = load_digits().data / 16.0
model = DeepConvGMM(10, max_iter=10, device=device, random_state=0, verbose=1).fit(X)
if rank == 0:
    score = model.score(X)
    print(f"{dist.get_world_size()} processes; mean top-layer log-likelihood {score:.3f}")
    print("cluster sizes:", np.bincount(model.predict(X), minlength=10))
dist.destroy_process_group()
