"""A demo page on 127.0.0.1: type text, see its entities highlighted and listed (FastAPI on uvicorn).

`python -m demo [--model_dir DIR] [--backend onnxrt|torch] [--port 7860]`; see `demo.server` and `demo.app`.
"""
