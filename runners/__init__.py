"""Runners behind one interface (Polygraphy style): activate / infer / deactivate.

One module per backend (onnxrt, torchrt, openvino), imported by name so that a backend's
package is loaded only where it is used.
"""
