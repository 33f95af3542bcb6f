"""The benchmark: words -> word labels, ten ways, on the same sentences (`python -m bench --help`).

paths (what is compared, each the engine on a runner), models and int8_source (the graphs they run,
the INT8 source picked by measurement), capability (what this CPU can run), timing, peak, peak_ov and
peaks (how it is timed, and the per-precision MatMul peaks it is held against), machine and flops
(what is recorded), acceptance (the issues' criteria), report (Markdown, plot), run (`run_benchmark`),
cli (the command).
"""
