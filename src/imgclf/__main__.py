"""`python -m imgclf ...` (as `torchrun --nproc_per_node N -m imgclf train DATA` runs it)."""

from imgclf.cli import entry

entry()
