"""A demo page on 127.0.0.1: type text, see its entities highlighted and listed (FastAPI on uvicorn).

`python -m apps.demo [--model_dir DIR] [--backend onnxrt|torch|openvino] [--port 7860]`; see `apps.demo.server`
and `apps.demo.app`.
"""
