"""Triton kernels for LEAPS (optional; requires the ``triton`` extra)."""
