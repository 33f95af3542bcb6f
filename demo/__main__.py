"""`python -m demo`: the NER demo page (see demo/server.py)."""
import sys

from demo.server import main

if __name__ == "__main__":
    sys.exit(main())
