"""Performance suite: each stage of our pipeline timed against a re-creation of the reference (uclaml/SPPO) way
of doing it, on the same machine in the same run, interleaved, and reported as ratios.

    python -m perf                      # the default suite (2 CPU cores: a few minutes)
    python -m perf --quick --repeats 2  # tiny sizes (smoke test)

See perf/README.md for what is measured and the figures of the last recorded run.
"""
