"""Tile kernels: pure functions on numpy tiles (BLAS through numpy, element-wise work through numexpr).

Nothing here knows about stores, tasks or workers, so every kernel can be
tested, profiled and reused on plain arrays.
"""
from blocks.gemm import gemm_accumulate, sum_tiles, tile_flops

__all__ = ["gemm_accumulate", "sum_tiles", "tile_flops"]
