"""`python -m postprocess`: the same command as bert_metric.py."""
from .cli import main

main()
