"""honcho, stopping the Procfile processes the way a Celery prefork worker needs.

Plain honcho sends SIGTERM to each process's whole process group, then SIGKILL 5 s later. A
Celery worker's pool processes, hit directly, die under it and the worker sometimes hangs in its
warm shutdown, which takes about 6 s on the filesystem transport anyway. Here SIGTERM goes to the
process alone (the Procfile `exec`s, so that is the program, not a shell), which stops its own
children, and the SIGKILL to the whole group comes after 20 s if anything is still running.

Used by bin/run as `python bin/_honcho.py start ...`; the arguments are honcho's.
"""

import os
import signal
from contextlib import suppress

from honcho import command, compat, manager


def _terminate(_manager: object, pid: int) -> None:
    with suppress(ProcessLookupError):  # already gone
        os.kill(pid, signal.SIGTERM)


if __name__ == "__main__":
    manager.KILL_WAIT = 20
    compat.ProcessManager.terminate = _terminate
    command.main()
