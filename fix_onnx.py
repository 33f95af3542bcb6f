"""python fix_onnx.py in.onnx out.onnx: make an ONNX BERT fp16-safe for ATC (see convert/fix.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from convert.fix import main  # noqa: E402

if __name__ == "__main__":
    main()
