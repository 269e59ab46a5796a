"""One worker of a hand-made cluster: `dlx.api.train`, then its final weights to an .npz file.

Usage: python worker_weights.py SPEC OUTPUT.npz [KEY=VALUE ...]
"""

import sys

import numpy as np

from dlx.api import train

if __name__ == "__main__":
    result = train(sys.argv[1], sys.argv[3:])
    np.savez(sys.argv[2], *result.model.get_weights())
    print(f"worker {result.worker} of {result.workers}: run '{result.run_id}'", flush=True)
