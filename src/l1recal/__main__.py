"""Allow ``python -m l1recal``."""

from l1recal.cli import main

main()
