"""``python -m wsol.report``: the ``wsol-report`` command."""

from wsol.report.study import main

main()
