"""Stand-in for PtychoPINN's ``ptycho_torch`` (tests only; see ../README.md)."""
