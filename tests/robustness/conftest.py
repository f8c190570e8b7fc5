"""The robustness suite (see docs/reliability.md). Each test states its expected outcome and its bound.

Long variants carry the ``soak`` marker and are left out of the default run
(pyproject's addopts has ``-m "not soak"``); run them with ``pytest -m soak tests/robustness``.
"""
