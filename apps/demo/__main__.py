"""`python -m apps.demo`: the NER demo page (see apps/demo/server.py)."""
import sys

from apps.demo.server import main

if __name__ == "__main__":
    sys.exit(main())
