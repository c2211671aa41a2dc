"""Model-recovery attacks, one file each."""
