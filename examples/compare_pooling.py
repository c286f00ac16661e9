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

It writes results.json, results.md, curves.png, paired.png, routing.png and
report.html into results/ (change with --out), and keeps every run in
results/runs/ as it finishes (continue an interrupted sweep with --resume;
a folder that already holds results needs --resume or --force).
compare_pooling.ipynb beside this file does the same in a notebook.
"""

import sys

from cnnpool.experiments.cli import main

if __name__ == "__main__":
    sys.exit(main())
