"""Candidate operations (placeholder: being written)."""

#: The DARTS search space, in the reference code's order (genotypes.PRIMITIVES).
DARTS_PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
