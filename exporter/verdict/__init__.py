"""Facts -> verdicts: which modules each kernel needs, the checks in the kernel's order, fixes."""
