"""The benchmark: words -> word labels, seven ways, on the same sentences (`python -m bench --help`).

paths (what is compared, each the engine on a runner), timing and peak (how it is timed), machine
and flops (what is recorded), acceptance (the issue's criteria), report (Markdown, plot), run
(`run_benchmark`), cli (the command).
"""
