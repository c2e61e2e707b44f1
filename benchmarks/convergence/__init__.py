"""Equal-budget convergence study (issue 14): FroSSL vs SimCLR, Barlow Twins and VICReg.

``run_study.sh`` trains every method in the same trainer on the same data for the same
wall-clock minutes; ``python -m benchmarks.convergence`` turns the run folders into
``RESULTS.md`` and plots (see ``report.py``).
"""
