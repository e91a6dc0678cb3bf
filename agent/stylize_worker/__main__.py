"""`python -m stylize_worker`: a warm worker of the pool (see serve.py); exits 0 when it leaves."""

from .serve import main

raise SystemExit(main())
