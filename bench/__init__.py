"""mmchat's benchmarks: each module prints a table and writes bench/results/NAME.json.

Run one from the repository root as a module, `python -m bench.startup` (CONTRIBUTING.md lists
them). What they share with the tests (the tiny GGUF models, media makers, stand-in servers) comes
through `bench.support`, the one module here that imports from tests/; `bench._table` prints and
writes the results.
"""
