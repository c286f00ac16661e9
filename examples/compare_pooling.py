"""Max versus mean pooling on scikit-image textures: the main comparison.

The same small CNN is trained once with max pooling and once with mean
pooling on each of several seeds (same data split, initial weights and
batch order per seed), and the results are compared seed by seed with a
95% confidence interval and a paired test.  This script is the
``cnnpool-compare`` command; every option of that command works here:

    python examples/compare_pooling.py                      # the default run, < 1 minute
    python examples/compare_pooling.py --dataset faces --seeds 12
    python examples/compare_pooling.py --pool max --pool mean --pool lp
    python examples/compare_pooling.py --help

It writes results.json, results.md, curves.png and routing.png into
results/ (change with --out).
"""

import sys

from cnnpool.experiments.cli import main

if __name__ == "__main__":
    sys.exit(main())
