"""The web console: where the Responsible Individual and the reviewers run the system.

Served by ``answerable serve`` under ``/console/`` when the config has a ``[console]`` table:
accounts (:mod:`~answerable.console.accounts`), sessions (:mod:`~answerable.console.sessions`),
the JSON API and pages (:mod:`~answerable.console.api`).
"""

from answerable.console.api import console_router, mount_console

__all__ = ["console_router", "mount_console"]
