"""``python -m vitlab`` runs the CLI (and ``torchrun -m vitlab`` runs it once per process)."""

from vitlab.cli import main

raise SystemExit(main())
