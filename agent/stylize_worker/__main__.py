"""`python -m stylize_worker`: one job, then exit with its status (0 done, 1 failed, 2 bad input)."""

from .job import main

raise SystemExit(main())
