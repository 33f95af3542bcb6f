"""Pieces every stage shares: typed errors, atomic writes, the model input spec."""
