"""The SEAL outer loop (ReST-EM), domain-agnostic: reward, selection, M-step, the loop that runs
them round after round, and its report."""
